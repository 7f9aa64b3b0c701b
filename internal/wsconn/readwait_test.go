//go:build linux

package wsconn

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// waitReturns runs w.wait in a goroutine and returns a channel closed when
// it returns.
func waitReturns(w readWaiter) <-chan struct{} {
	done := make(chan struct{})
	go func() { w.wait(); close(done) }()
	return done
}

func TestReadWaiterWaitsForData(t *testing.T) {
	server, client := tcpPair(t)
	br := bufio.NewReaderSize(server, 16)
	w := newReadWaiter(server, br)
	if w.rc == nil {
		t.Fatal("no raw connection for a TCP socket")
	}
	done := waitReturns(w)
	select {
	case <-done:
		t.Fatal("wait returned on an empty socket")
	case <-time.After(50 * time.Millisecond):
	}
	client.Write([]byte("abc"))
	<-done // a hang here is the failure

	// The data is still there for the real read.
	if s, err := br.Peek(3); err != nil || string(s) != "abc" {
		t.Fatalf("after wait: Peek = %q, %v; want abc", s, err)
	}
}

func TestReadWaiterReturnsAtOnce(t *testing.T) {
	tests := []struct {
		name  string
		setup func(server, client net.Conn, br *bufio.Reader)
	}{
		{"bytes buffered, socket empty", func(server, client net.Conn, br *bufio.Reader) {
			client.Write([]byte("0123456789"))
			br.ReadByte() // pulls everything into the buffer, leaves 9
		}},
		{"peer closed", func(server, client net.Conn, br *bufio.Reader) { client.Close() }},
		{"read deadline passed", func(server, client net.Conn, br *bufio.Reader) {
			server.SetReadDeadline(time.Now().Add(-time.Second))
		}},
		{"socket closed", func(server, client net.Conn, br *bufio.Reader) { server.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server, client := tcpPair(t)
			br := bufio.NewReaderSize(server, 512)
			w := newReadWaiter(server, br)
			tt.setup(server, client, br)
			select {
			case <-waitReturns(w):
			case <-time.After(5 * time.Second):
				t.Fatal("wait blocked")
			}
		})
	}
}

func TestReadWaiterWithoutSocketNeverWaits(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := newReadWaiter(a, bufio.NewReader(a))
	select {
	case <-waitReturns(w):
	case <-time.After(5 * time.Second):
		t.Fatal("wait blocked on a connection it cannot poll")
	}
}
