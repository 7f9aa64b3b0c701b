package wsconn

import (
	"errors"
	"io"
	"net"
	"runtime/debug"
	"syscall"
	"time"
)

// read is the connection's reader: the only goroutine that reads the
// socket, from Start until the connection is over. It parks until the
// socket is readable (readwait.go), then reads and handles one message or
// control frame on a helper goroutine (freshstack.go), so that it parks
// on the smallest stack. It ends when the peer closes, the socket fails, a
// deadline passes or a frame is refused, and then finishes the connection.
func (c *Conn) read() {
	var d Disconnect
	var err error
	defer func() { c.finish(d, err) }()
	defer func() { // runs first, so that finish still follows a panic
		if v := recover(); v != nil {
			d, err = c.cfg.Internal, asPanicError(v)
		}
	}()
	c.mu.Lock()
	if !c.closing {
		c.raw.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
	}
	c.mu.Unlock()
	for {
		c.wait.wait()
		stop := false
		onFreshStack(func() { stop, d, err = c.readOne() })
		if stop {
			return
		}
	}
}

// asPanicError turns a recovered value into a *PanicError carrying the
// stack where it struck: the helper's, if it happened on one.
func asPanicError(v any) *PanicError {
	if hp, ok := v.(*helperPanic); ok {
		return &PanicError{Where: "reader", Value: hp.value, Stack: hp.stack}
	}
	return &PanicError{Where: "reader", Value: v, Stack: debug.Stack()}
}

// readOne reads frames until it has handled one control frame or one
// whole data message, which it passes to the handler unless the
// connection is closing. It reports whether reading should stop, and why.
func (c *Conn) readOne() (stop bool, d Disconnect, err error) {
	var msg []byte
	inMsg, binary := false, false
	for {
		h, err := readHeader(c.br)
		if err != nil {
			return c.readFailed(err)
		}
		if h.op >= opClose {
			// At most 125 bytes, always within the read buffer: copied onto
			// the stack, so a ping or pong allocates nothing.
			raw, err := take(c.br, int(h.length))
			if err != nil {
				return c.readFailed(err)
			}
			var buf [maxControlPayload]byte
			p := buf[:copy(buf[:], raw)]
			unmask(p, h.mask)
			if stop, d, err := c.control(h.op, p); stop || !inMsg {
				return stop, d, err
			}
			continue // a control frame between two fragments of a message
		}
		switch {
		case h.op == opContinuation && !inMsg:
			return c.readFailed(protocolError("continuation frame without a message to continue"))
		case h.op != opContinuation && inMsg:
			return c.readFailed(protocolError("a new message began before the last one ended"))
		case !inMsg:
			inMsg, binary = true, h.op == opBinary
			if h.fin && h.length <= int64(c.cfg.ReadLimit) {
				msg = make([]byte, 0, h.length)
			}
		}
		// Refused on its header, so an oversized payload is never read.
		if int64(len(msg))+h.length > int64(c.cfg.ReadLimit) {
			return true, c.cfg.TooBig, nil
		}
		if msg, err = readPayload(c.br, h, msg); err != nil {
			return c.readFailed(err)
		}
		if h.fin {
			if !c.isClosing() {
				c.h.Message(msg, binary)
			}
			return false, Disconnect{}, nil
		}
	}
}

// control handles a ping, pong or close frame with payload p.
func (c *Conn) control(op byte, p []byte) (stop bool, d Disconnect, err error) {
	switch op {
	case opPing:
		c.queuePong(p)
	case opPong:
		c.mu.Lock()
		if !c.closing { // closing: the close grace deadline stands
			c.raw.SetReadDeadline(time.Now().Add(c.cfg.PongWait))
		}
		c.mu.Unlock()
	case opClose:
		code, _, err := parseClose(p)
		if err != nil {
			return c.readFailed(err)
		}
		return true, PeerClosed(code), nil
	}
	return false, Disconnect{}, nil
}

// queuePong asks the writer to answer a ping with payload p. Only the
// latest ping is answered, as RFC 6455 section 5.5.3 allows, so a peer
// pinging fast cannot make the queue grow.
func (c *Conn) queuePong(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return
	}
	c.pong = append(c.pong[:0], p...)
	c.pongDue = true
	c.wakeLocked()
}

// isClosing reports whether the connection has begun to close.
func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// readFailed classifies what stopped a read.
func (c *Conn) readFailed(err error) (bool, Disconnect, error) {
	var pe protocolError
	var ne net.Error
	switch {
	case c.isClosing():
		// The server ended it (or the writer failed) first; whatever the
		// read saw now is the echo of that.
		return true, ConnLost, nil
	case errors.As(err, &pe):
		d := c.cfg.Protocol
		d.Reason += ": " + string(pe)
		return true, d, err
	case errors.As(err, &ne) && ne.Timeout():
		return true, c.cfg.PongTimeout, err
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET):
		return true, ConnLost, nil // the peer went without a close frame
	}
	return true, ConnLost, err
}
