package main

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// batchConn wraps a hijacked connection so that everything written between
// hold and flush leaves in one socket write.
//
// Why: on loopback and on busy servers most of the cost of a WebSocket
// server is in the kernel, about one write syscall (and one TCP segment) per
// frame. A writePump that found 50 queued events would otherwise make 50
// syscalls for a text client, which must get one frame per line. gorilla
// writes each frame straight to its net.Conn, so the only place to gather
// them is under it.
//
// Outside hold, writes pass straight through: the handshake response and
// control frames written by the read goroutine (pong replies, the 1009
// close) are not delayed. gorilla serialises its own writes, and mu keeps the
// buffer consistent when a control frame arrives while a batch is open.
type batchConn struct {
	net.Conn

	mu      sync.Mutex // guards the following fields
	holding bool
	buf     *[]byte // from bufPool while holding, nil otherwise
}

// bufPool recycles batch buffers so that an idle connection holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuf is the largest buffer returned to the pool; bigger ones, from
// an unusual burst, are left to the garbage collector.
const maxPooledBuf = 64 << 10

// Write buffers p while a batch is open and writes it through otherwise.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	if b.holding {
		*b.buf = append(*b.buf, p...)
		b.mu.Unlock()
		return len(p), nil
	}
	b.mu.Unlock()
	return b.Conn.Write(p)
}

// hold opens a batch: writes are buffered until flush.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.holding = true
	b.buf = bufPool.Get().(*[]byte)
	b.mu.Unlock()
}

// flush closes the batch and writes everything buffered in one call.
// The caller sets the write deadline beforehand.
func (b *batchConn) flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.holding {
		return nil
	}
	b.holding = false
	buf := b.buf
	b.buf = nil
	var err error
	if len(*buf) > 0 {
		_, err = b.Conn.Write(*buf)
	}
	if cap(*buf) <= maxPooledBuf {
		*buf = (*buf)[:0]
		bufPool.Put(buf)
	}
	return err
}

// hijackWrapper is an http.ResponseWriter whose Hijack hands out a
// batchConn, so the WebSocket library builds its connection on top of it.
type hijackWrapper struct {
	http.ResponseWriter
	bc *batchConn    // set by Hijack
	br *bufio.Reader // set by Hijack: the read buffer gorilla will use, or nil
}

// readBufferSize is the per-connection read buffer. Client frames are at
// most MaxMessageSize (512) bytes and gorilla reads larger payloads past the
// buffer, so a small one costs nothing but saves memory on every idle
// connection.
const readBufferSize = 512

// Hijack takes over the connection and wraps it. It also swaps net/http's
// 4 KiB read buffer for a readBufferSize one: an Upgrader with
// ReadBufferSize 0 adopts the hijacked reader as the connection's buffer,
// and readPump needs to see that buffer (readWaiter). net/http's reader is
// only swapped when empty; a client that sent data before the handshake
// completed is refused by gorilla either way.
func (w *hijackWrapper) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.bc = &batchConn{Conn: conn}
	if brw.Reader.Buffered() == 0 {
		w.br = bufio.NewReaderSize(w.bc, readBufferSize)
		brw = bufio.NewReadWriter(w.br, brw.Writer)
	}
	return w.bc, brw, nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *hijackWrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }
