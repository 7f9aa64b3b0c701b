package wsconn

import (
	"bytes"
	"fmt"
	"io"
	"testing"
)

// BenchmarkWrite measures a writer's round over a real loopback socket: q
// messages already queued are taken, encoded and written in one socket
// write, whatever q is. ns/message shows what coalescing saves; writes/op
// is counted on the socket itself. allocs/op includes the reading peer's
// (gorilla allocates a reader per frame) and, at 64, the queue's array,
// which a batch that large does not get back (keepBatchCap).
//
//	go test -run '^$' -bench Write -benchmem ./internal/wsconn
func BenchmarkWrite(b *testing.B) {
	for _, ndjson := range []bool{true, false} {
		for _, q := range []int{1, 64} {
			b.Run(fmt.Sprintf("ndjson=%v/queued=%d", ndjson, q), func(b *testing.B) {
				benchWrite(b, ndjson, q)
			})
		}
	}
}

func benchWrite(b *testing.B, ndjson bool, q int) {
	cfg := testConfig()
	cfg.NDJSON = ndjson
	cfg.QueueLimit = q
	wrote := make(chan struct{}, 1)
	cfg.Wrote = func(int, int) { wrote <- struct{}{} }
	p := dialPair(b, cfg, true)
	p.start(b)
	// The peer reads as fast as it can, so writes never stall on a full
	// socket buffer; it stops when the connection closes.
	go func() {
		for {
			_, r, err := p.client.NextReader()
			if err != nil {
				return
			}
			io.Copy(io.Discard, r)
		}
	}()
	msg := bytes.Repeat([]byte("x"), 128)
	b.ReportAllocs()
	for b.Loop() {
		p.conn.mu.Lock()
		for range q {
			p.conn.q.push(msg, q)
		}
		p.conn.wakeLocked()
		p.conn.mu.Unlock()
		<-wrote
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*q), "ns/message")
	b.ReportMetric(float64(p.writes.Load())/float64(b.N), "writes/op")
}
