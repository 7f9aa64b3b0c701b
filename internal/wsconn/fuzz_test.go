package wsconn

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
)

// FuzzReader feeds arbitrary bytes to a connection's reader as if a client
// had sent them. The reader must never panic, never hand the handler a
// message over ReadLimit, and stop once the input ends; whatever it
// answers (pongs, close frames) goes out through the writer.
func FuzzReader(f *testing.F) {
	f.Add(masked(0x81, []byte("hello")))
	f.Add(append(masked(0x01, []byte("hel")), append(masked(0x89, []byte("p")), masked(0x80, []byte("lo"))...)...))
	f.Add(masked(0x88, []byte{0x03, 0xE8}))
	f.Add(masked(0x82, bytes.Repeat([]byte{1}, 600)))
	f.Add(clientHeader(0xC1, 300, false))
	f.Fuzz(func(t *testing.T, in []byte) {
		cfg := testConfig()
		server, peer := net.Pipe()
		go io.Copy(io.Discard, peer) // the writer's pongs and close frames
		defer peer.Close()
		c := newConn(server, bufio.NewReader(bytes.NewReader(in)), cfg)
		h := &limitChecker{t: t, limit: cfg.ReadLimit}
		c.h = h
		for range len(in) + 1 { // every round consumes input or stops
			if stop, _, _ := c.readOne(); stop {
				break
			}
		}
		c.Abort()
		c.writers.Wait()
	})
}

// limitChecker is a Handler that fails the test on a message over limit.
type limitChecker struct {
	t     *testing.T
	limit int
}

func (h *limitChecker) Message(data []byte, binary bool) {
	if len(data) > h.limit {
		h.t.Errorf("handler got a %d-byte message; the limit is %d", len(data), h.limit)
	}
}

func (h *limitChecker) Closed(Disconnect, error) {}
