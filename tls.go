package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"time"
)

// loadTLS reads a certificate and key for -tls-cert/-tls-key. The config
// offers only HTTP/1.1: a WebSocket upgrade needs it (gorilla hijacks the
// connection, which HTTP/2 cannot do), and a browser that saw h2 offered
// might try WebSocket over HTTP/2.
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// gencert is the gencert subcommand: it writes a self-signed certificate
// and its ECDSA P-256 key for development, valid for the -host names and
// IPs. The certificate is its own CA, so a client can trust exactly it.
func gencert(args []string, stdout, stderr io.Writer, now time.Time) error {
	fs := newSubFlagSet("gencert", stderr, "writes a self-signed TLS certificate and key for development")
	hosts := fs.String("host", "localhost,127.0.0.1,::1", "comma-separated host names and IP addresses")
	certOut := fs.String("cert", "cert.pem", "certificate file to write")
	keyOut := fs.String("key", "key.pem", "private key file to write (mode 0600)")
	days := fs.Int("days", 365, "days the certificate is valid")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *days < 1 {
		return fmt.Errorf("-days %d: must be at least 1", *days)
	}
	certPEM, keyPEM, err := selfSigned(strings.Split(*hosts, ","), now, time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	if err := writeNew(*certOut, certPEM, 0o644, *force); err != nil {
		return err
	}
	if err := writeNew(*keyOut, keyPEM, 0o600, *force); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s for %s\nserve with: hubbub -tls-cert %s -tls-key %s\n",
		*certOut, *keyOut, *hosts, *certOut, *keyOut)
	return nil
}

// selfSigned makes a PEM certificate and key for hosts, valid from now for d.
func selfSigned(hosts []string, now time.Time, d time.Duration) (certPEM, keyPEM []byte, err error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{"hubbub development"}},
		NotBefore:             now.Add(-time.Hour), // tolerate a little clock skew
		NotAfter:              now.Add(d),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch ip := net.ParseIP(h); {
		case h == "":
		case ip != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(tmpl.IPAddresses)+len(tmpl.DNSNames) == 0 {
		return nil, nil, errors.New("gencert: -host names no host")
	}
	tmpl.Subject.CommonName = strings.TrimSpace(hosts[0])
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, fmt.Errorf("gencert: serial: %w", err)
	}
	tmpl.SerialNumber = serial
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("gencert: key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("gencert: certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("gencert: key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeNew writes data to path with mode perm, refusing to replace an
// existing file unless force is set.
func writeNew(path string, data []byte, perm os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, perm)
	if errors.Is(err, os.ErrExist) {
		return fmt.Errorf("gencert: %s exists; remove it or pass -force", path)
	}
	if err != nil {
		return fmt.Errorf("gencert: %w", err)
	}
	if err := f.Chmod(perm); err != nil { // -force keeps an old file's mode otherwise
		f.Close()
		return fmt.Errorf("gencert: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("gencert: write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("gencert: write %s: %w", path, err)
	}
	return nil
}
