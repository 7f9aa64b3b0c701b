//go:build linux

package wsconn

import (
	"bufio"
	"net"
	"syscall"
)

// readWaiter lets the reader sleep until its socket has something to read
// before it starts on a frame.
//
// Why: an idle connection's reader spends its whole life parked. Parked
// inside a frame read it would sit several calls deep (frame parsing,
// bufio, net.Conn.Read), which needs a 4 KiB goroutine stack; parked here
// it needs the minimum 2 KiB, and at 19,000 idle connections that
// difference is a third of the server's memory. The read itself runs
// on a helper goroutine (freshstack.go), so the reader never grows: the
// runtime would not shrink it back.
type readWaiter struct {
	rc syscall.RawConn // nil when the connection is not a plain socket: never waits
	br *bufio.Reader   // the reader's buffer; bytes in it are readable without the socket
}

// newReadWaiter returns a waiter for conn, the socket, and br, the buffered
// reader the connection reads through. Either may be unusable (a
// wrapped connection in a test, an unknown reader); the waiter then never
// waits and the reader behaves exactly as without it.
func newReadWaiter(conn net.Conn, br *bufio.Reader) readWaiter {
	sc, ok := conn.(syscall.Conn)
	if !ok || br == nil {
		return readWaiter{}
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return readWaiter{}
	}
	return readWaiter{rc: rc, br: br}
}

// wait returns once a read would not block: bytes are buffered, the socket
// has data, the peer closed it, or waiting failed (read deadline passed,
// socket closed). It reports nothing: the read that follows meets the same
// condition and returns the real error. Must only be called by the reader.
func (w readWaiter) wait() {
	if w.rc == nil || w.br.Buffered() > 0 {
		return
	}
	// The poller is edge-triggered, so ask the socket first and wait only
	// when it is empty; then the next byte to arrive wakes us.
	w.rc.Read(socketReadable)
}

// socketReadable peeks at fd without consuming anything and reports whether
// a read would return at once (data, end of stream or an error).
func socketReadable(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
