package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestTLSEndToEnd serves HTTPS and WSS on one port with a certificate made
// by gencert, and talks to it with a client that trusts exactly that
// certificate.
func TestTLSEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := gencert([]string{"-host", "127.0.0.1", "-cert", cert, "-key", key}, io.Discard, io.Discard, time.Now()); err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(certPEM) {
		t.Fatal("generated certificate does not parse")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{TLSCert: cert, TLSKey: key, ShutdownTimeout: 5 * time.Second}.withDefaults()
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, testLogger(t), ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	addr := ln.Addr().String()

	// WSS, trusting the generated certificate.
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("wss://"+addr+"/ws?format=text&name=secure", nil)
	if err != nil {
		t.Fatalf("wss dial: %v", err)
	}
	defer conn.Close()
	p := &peer{t: t, conn: conn}
	p.lineWith("you are secure")
	p.sendRaw("over tls")
	p.lineWith("secure: over tls")

	// HTTPS for the page, on the same port, HTTP/1.1 only.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("https get: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Errorf("GET / over https: %s %s; want 200 over HTTP/1.1", resp.Proto, resp.Status)
	}

	// A client that does not trust the certificate is refused by TLS.
	if _, _, err := websocket.DefaultDialer.Dial("wss://"+addr+"/ws", nil); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusting dial: %v; want a certificate error", err)
	}
	// Plain ws:// to the TLS port does not get a WebSocket.
	if c, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws", nil); err == nil {
		c.Close()
		t.Error("plain ws:// dial to the TLS port succeeded")
	}
}

func TestGencert(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	args := []string{"-host", "localhost, 127.0.0.1,::1", "-cert", cert, "-key", key, "-days", "7"}
	var out bytes.Buffer
	now := time.Now()
	if err := gencert(args, &out, io.Discard, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "-tls-cert "+cert) {
		t.Errorf("output %q does not say how to serve", out.String())
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v (%v); want 0600", fi.Mode(), err)
	}
	b, _ := os.ReadFile(cert)
	block, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.DNSNames) != 1 || c.DNSNames[0] != "localhost" || len(c.IPAddresses) != 2 {
		t.Errorf("names %v, IPs %v; want localhost and two IPs", c.DNSNames, c.IPAddresses)
	}
	if c.NotAfter.Before(now.Add(6*24*time.Hour)) || c.NotAfter.After(now.Add(8*24*time.Hour)) {
		t.Errorf("valid until %v; want 7 days from now", c.NotAfter)
	}
	if err := c.VerifyHostname("127.0.0.1"); err != nil {
		t.Error(err)
	}

	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"exists", args, "exists"},
		{"no hosts", []string{"-host", " , ", "-cert", filepath.Join(dir, "x"), "-key", filepath.Join(dir, "y")}, "no host"},
		{"bad days", []string{"-days", "0"}, "-days"},
		{"stray arg", []string{"extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		if err := gencert(tt.args, io.Discard, io.Discard, now); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: gencert = %v; want error with %q", tt.name, err, tt.wantErr)
		}
	}
	if err := gencert(append(args, "-force"), io.Discard, io.Discard, now); err != nil {
		t.Errorf("-force over existing files: %v", err)
	}
}
