package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

func TestNATSVersionAtLeast(t *testing.T) {
	tests := []struct {
		v       string
		want    bool
		wantErr bool
	}{
		{"2.9.0", true, false},
		{"2.9.10", true, false},
		{"2.10.1", true, false},
		{"3.0.0", true, false},
		{"v2.11.0-RC.1", true, false},
		{"2.8.4", false, false},
		{"2.2.6", false, false},
		{"1.4.1", false, false},
		{"2.9", false, true},
		{"two.nine.zero", false, true},
	}
	for _, tt := range tests {
		got, err := natsVersionAtLeast(tt.v, minNATSVersion)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("natsVersionAtLeast(%q) = %v, %v; want %v, error %v", tt.v, got, err, tt.want, tt.wantErr)
		}
	}
}

// startNATSOn runs an in-process NATS server on port, with JetStream (its
// store in dir) or without, until stopped or the test ends.
func startNATSOn(t testing.TB, port int, js bool, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: js, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready within 10s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// stopNATS shuts s down and waits until it has.
func stopNATS(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// freePort returns a loopback TCP port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// jetStreamOff is what a node says of a NATS server without JetStream.
func jetStreamOff(url string) string {
	return "JetStream is not enabled on " + url + "; start nats-server with -js"
}

// TestRefuseNATSWithoutJetStream starts hubbub against a NATS server that
// runs without JetStream: Open, and so the command line, must refuse to
// start, saying what to do.
func TestRefuseNATSWithoutJetStream(t *testing.T) {
	ns := startNATSOn(t, server.RANDOM_PORT, false, "")
	want := jetStreamOff(ns.ClientURL())
	s, err := Open(Config{NATSURL: ns.ClientURL()}, testLogger(t))
	if err == nil {
		s.Shutdown(context.Background())
		t.Fatal("Open succeeded against NATS without JetStream; want it refused")
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Open: %v; want it to say %q", err, want)
	}
	_, stderr, code := runCmd(t, nil, "-addr", "127.0.0.1:0", "-nats-url", ns.ClientURL())
	if code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("hubbub -nats-url (no JetStream) = exit %d, stderr %q; want 1 and %q", code, stderr, want)
	}
}

// TestNotReadyWhileJetStreamMissing runs a node through serve while its
// NATS server changes under it: restarted without JetStream, the node must
// turn not ready with an ERROR saying so, and ready again once JetStream is
// back; a node started before its NATS server, which then comes up without
// JetStream, must not turn ready.
func TestNotReadyWhileJetStreamMissing(t *testing.T) {
	t.Run("NATS restarts without JetStream", func(t *testing.T) {
		port, dir := freePort(t), t.TempDir()
		ns := startNATSOn(t, port, true, dir)
		url := ns.ClientURL()
		node := startServe(t, Config{NATSURL: url})
		node.waitReady(t, 200, "ready")

		stopNATS(ns)
		ns = startNATSOn(t, port, false, "")
		node.waitReady(t, 503, "jetstream: "+jetStreamOff(url))
		if logs := node.logs.String(); !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, jetStreamOff(url)) {
			t.Errorf("no ERROR saying %q in the log:\n%s", jetStreamOff(url), logs)
		}

		stopNATS(ns)
		startNATSOn(t, port, true, dir)
		node.waitReady(t, 200, "ready")
	})
	t.Run("NATS comes up after the node, without JetStream", func(t *testing.T) {
		port := freePort(t)
		url := fmt.Sprintf("nats://127.0.0.1:%d", port)
		node := startServe(t, Config{NATSURL: url})
		node.waitReady(t, 503, "cluster: ")
		startNATSOn(t, port, false, "")
		node.waitReady(t, 503, "jetstream: "+jetStreamOff(url))
	})
}

// waitReady polls /readyz until it answers status with a body containing
// want, and fails the test after 15 s.
func (n *servedNode) waitReady(t *testing.T, status int, want string) {
	t.Helper()
	var got int
	var body string
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got, body = httpGet(t, n.public+"/readyz"); got == status && strings.Contains(body, want) {
			return
		}
	}
	t.Fatalf("/readyz = %d %q; want %d containing %q", got, body, status, want)
}

// debianNATSServer returns the path of an installed nats-server binary
// (Debian's package puts it in /usr/sbin), or skips the test; with
// HUBBUB_REQUIRE_NATS_SERVER=1, as CI sets, it fails instead.
func debianNATSServer(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"nats-server", "/usr/sbin/nats-server"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	msg := "no nats-server binary (apt-get install nats-server); the in-process server tests still ran"
	if os.Getenv("HUBBUB_REQUIRE_NATS_SERVER") == "1" {
		t.Fatal(msg + "; HUBBUB_REQUIRE_NATS_SERVER=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}

// runNATSBinary starts the nats-server binary on a free loopback port with
// args and returns its client URL; the process is stopped, by its PID, when
// the test ends.
func runNATSBinary(t *testing.T, bin string, args ...string) string {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(bin, append([]string{"-a", "127.0.0.1", "-p", strconv.Itoa(port)}, args...)...)
	// nats-server logs to stderr; show it with the test's output. Wait,
	// in the cleanup, waits for this copy to end.
	cmd.Stderr = tWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait() // 2.9 exits 1 on SIGTERM: nothing to report
	})
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			t.Logf("nats-server %s listening on %s", nc.ConnectedServerVersion(), url)
			nc.Close()
			return url
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server on %s not reachable within 10s: %v", url, err)
		}
	}
}

// TestDebianNATSServer runs against the nats-server of Debian's package
// (2.9.x, the oldest line hubbub supports): without -js a node refuses to
// start, and with it the whole broker contract holds.
func TestDebianNATSServer(t *testing.T) {
	bin := debianNATSServer(t)
	t.Run("without -js", func(t *testing.T) {
		url := runNATSBinary(t, bin)
		_, err := Open(Config{NATSURL: url}, testLogger(t))
		if err == nil || !strings.Contains(err.Error(), jetStreamOff(url)) {
			t.Errorf("Open against nats-server without -js: %v; want %q", err, jetStreamOff(url))
		}
	})
	t.Run("with -js", func(t *testing.T) {
		url := runNATSBinary(t, bin, "-js", "-sd", t.TempDir())
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		v := nc.ConnectedServerVersion()
		nc.Close()
		if ok, err := natsVersionAtLeast(v, minNATSVersion); !ok || err != nil {
			t.Fatalf("nats-server %s is older than the oldest supported; the test proves nothing (%v)", v, err)
		}
		testBroker(t, func(t *testing.T) Broker {
			prefix := clusterOf(t, func() any { return "d" + newEpoch()[:10] }).(string)
			b, err := newNATSBroker(natsOptions{
				URL:      url,
				Prefix:   prefix,
				Node:     fmt.Sprintf("n%d", nodeCount(t)),
				History:  brokerHistory,
				Interval: 100 * time.Millisecond,
				Log:      testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
			return b
		})
	})
}
