package wsconn

import (
	"errors"
	"net"
	"runtime/debug"
	"sync"
	"time"
)

// The writer: the only goroutine that writes a connection's socket.
//
// It exists only while there is something to write. A push to a
// connection without one starts it; it takes everything queued, encodes
// it into one buffer and writes that in one call; and while it writes,
// whatever else is pushed waits in the queue for the next round. So a
// connection that receives one message now and then gets each at once, in
// a write of its own, and a connection that receives faster than its
// writer gets to run — because the server is busy — gets several per
// write. No timer decides this: the coalescing comes from the load itself,
// and costs nothing while there is spare capacity.
//
// When the queue is empty the writer parks; after WriterIdle without a
// message it exits, so an idle connection has no writer goroutine and no
// queue memory at all. Writers follow one another, never overlap: a new
// one starts only after the last has said, under the connection's mutex,
// that it is leaving.

// writer is one writer goroutine's state.
type writer struct {
	c        *Conn
	buf      *[]byte     // encoding buffer, from bufPool
	lastData time.Time   // when messages were last written; zero before the first
	timer    *time.Timer // the idle timer, made on the first park
	armed    bool        // timer is running
}

// bufPool recycles writers' encoding buffers, so that a connection without
// a writer holds none.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// maxPooledBuf is the largest buffer returned to bufPool; bigger ones, from
// an unusual burst, are left to the garbage collector.
const maxPooledBuf = 64 << 10

// testHookWrite, when a test sets it, is called before every socket write,
// so that the test can make a writer panic. Nil outside tests.
var testHookWrite func()

// writeLoop is the body of a writer goroutine; see the top of this file.
func (c *Conn) writeLoop() {
	w := &writer{c: c}
	defer c.writers.Done()
	defer w.recoverPanic() // before Done: the connection is settled when Wait returns
	var prev [][]byte
	for {
		c.mu.Lock()
		c.parked = false
		c.q.recycle(prev)
		prev = nil
		batch := c.q.take()
		ping, pongDue, pong, closeDue, end := c.pingDue, c.pongDue, c.pong, c.closeDue, c.end
		c.pingDue, c.pongDue, c.pong, c.closeDue = false, false, nil, false
		if len(batch) == 0 && !ping && !pongDue && !closeDue {
			if c.closing || w.idle(time.Now()) {
				w.leaveLocked()
				c.mu.Unlock()
				return
			}
			c.parked = true
			c.mu.Unlock()
			w.park()
			continue
		}
		c.mu.Unlock()

		err := w.write(batch, ping, pongDue, pong, closeDue, end)
		prev = batch
		switch {
		case err != nil:
			d := ConnLost
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				d = c.cfg.WriteTimeout
			}
			w.fail(d, err)
			return
		case closeDue:
			c.mu.Lock()
			c.closeSent = true
			// The reply ends the reader; if it never comes, this does.
			c.raw.SetReadDeadline(time.Now().Add(c.cfg.CloseGrace))
			w.leaveLocked()
			c.mu.Unlock()
			return
		}
	}
}

// write encodes one round — a pong, a ping, the batch, the close frame,
// whichever are due — and writes it in one socket write.
func (w *writer) write(batch [][]byte, ping, pongDue bool, pong []byte, closeDue bool, end Disconnect) error {
	if testHookWrite != nil {
		testHookWrite()
	}
	c := w.c
	if w.buf == nil {
		w.buf = bufPool.Get().(*[]byte)
	}
	b := (*w.buf)[:0]
	if pongDue {
		b = appendHeader(b, opPong, len(pong))
		b = append(b, pong...)
	}
	if ping {
		b = appendHeader(b, opPing, 0)
	}
	frames := 0
	switch {
	case len(batch) == 0:
	case c.cfg.NDJSON:
		n := len(batch) - 1 // the newlines
		for _, m := range batch {
			n += len(m)
		}
		b = appendHeader(b, opText, n)
		for i, m := range batch {
			if i > 0 {
				b = append(b, '\n')
			}
			b = append(b, m...)
		}
		frames = 1
	default:
		for _, m := range batch {
			b = appendHeader(b, opText, len(m))
			b = append(b, m...)
		}
		frames = len(batch)
	}
	if closeDue {
		b = appendClose(b, end.Code, end.Reason)
	}
	*w.buf = b
	now := time.Now()
	if err := w.refreshDeadline(now); err != nil {
		return err
	}
	if _, err := c.raw.Write(b); err != nil {
		return err
	}
	if len(batch) > 0 {
		w.lastData = now
		if c.cfg.Wrote != nil {
			c.cfg.Wrote(len(batch), frames)
		}
	}
	return nil
}

// refreshDeadline makes sure the coming write has between 7/8 of WriteWait
// and all of it. Moving a socket's deadline costs a runtime timer update,
// so a busy writer moves it once per WriteWait/8 rather than per write.
func (w *writer) refreshDeadline(now time.Time) error {
	c := w.c
	dl := now.Add(c.cfg.WriteWait)
	if dl.Sub(c.deadline) <= c.cfg.WriteWait/8 {
		return nil
	}
	if err := c.raw.SetWriteDeadline(dl); err != nil {
		return err
	}
	c.deadline = dl
	return nil
}

// idle reports whether the writer has had no message to write for
// WriterIdle, or never had one (it came for a ping).
func (w *writer) idle(now time.Time) bool {
	return w.lastData.IsZero() || now.Sub(w.lastData) >= w.c.cfg.WriterIdle
}

// park waits for a push or for the idle timer. The timer runs from the
// last message written; it is moved only when it fires early, so a busy
// writer touches it once per WriterIdle, not once per write.
func (w *writer) park() {
	if !w.armed {
		d := w.c.cfg.WriterIdle - time.Since(w.lastData)
		if w.timer == nil {
			w.timer = time.NewTimer(d)
		} else {
			w.timer.Reset(d)
		}
		w.armed = true
	}
	select {
	case <-w.c.ready:
	case <-w.timer.C:
		w.armed = false
	}
}

// leaveLocked ends this writer's life: it gives back its buffer and the
// queue's arrays, and marks the connection writer-less, or done for good
// if it is closing. Must be called with mu held.
func (w *writer) leaveLocked() {
	c := w.c
	if c.closing {
		c.writerDoneLocked()
	} else {
		c.writing, c.parked = false, false
	}
	c.q.release()
	select {
	case <-c.ready: // a stale wake-up; the next writer need not see it
	default:
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.buf != nil && cap(*w.buf) <= maxPooledBuf {
		bufPool.Put(w.buf)
	}
	w.buf = nil
}

// fail ends the connection because writing failed (d says how): nothing
// more is written and the socket is closed, which also wakes the reader.
func (w *writer) fail(d Disconnect, err error) {
	c := w.c
	c.mu.Lock()
	c.setEndLocked(d, err)
	c.beginClosingLocked()
	c.closeDue = false
	c.q.items = nil
	w.leaveLocked()
	c.mu.Unlock()
	c.raw.Close()
}

// recoverPanic stops a panic in the writer: it may have struck in the
// middle of encoding, so nothing more is written and the socket is closed.
// The connection ends with Config.Internal.
func (w *writer) recoverPanic() {
	v := recover()
	if v == nil {
		return
	}
	w.fail(w.c.cfg.Internal, &PanicError{Where: "writer", Value: v, Stack: debug.Stack()})
}
