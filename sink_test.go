package main

import (
	"sync"

	"hubbub/internal/wsconn"
)

// memSink is a client connection without a socket, for benchmarks and
// tests that exercise the hub alone: it queues what the hub pushes, with
// the same limit and errors as a real connection, and the test drains it.
type memSink struct {
	mu     sync.Mutex
	items  [][]byte
	spare  [][]byte // the array of the last batch taken; the next take reuses it
	limit  int
	closed bool
	end    wsconn.Disconnect
	ready  chan struct{} // signalled on push and close; buffered (1)
}

var _ sink = (*memSink)(nil)

func newMemSink(limit int) *memSink {
	return &memSink{limit: limit, ready: make(chan struct{}, 1)}
}

func (s *memSink) Push(msg []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return 0, wsconn.ErrClosed
	case len(s.items) >= s.limit:
		return len(s.items), wsconn.ErrQueueFull
	}
	s.items = append(s.items, msg)
	s.signal()
	return len(s.items), nil
}

func (s *memSink) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.items)
}

func (s *memSink) Ping() {}

func (s *memSink) Close(d wsconn.Disconnect) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed, s.end = true, d
	}
	s.signal()
}

func (s *memSink) Abort() { s.Close(wsconn.ConnLost) }

func (s *memSink) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

// take returns everything queued and whether the sink is closed. The
// batch is the caller's until its next take, which reuses its array, so
// that draining allocates nothing.
func (s *memSink) take() (batch [][]byte, closed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.spare)
	batch, s.items, s.spare = s.items, s.spare[:0], s.items
	return batch, s.closed
}

// discard empties the queue, keeping its array so later pushes reuse it.
func (s *memSink) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.items)
	s.items = s.items[:0]
}

// drain calls f for every message pushed until the sink is closed and
// empty, and returns the reason it was closed with.
func (s *memSink) drain(f func([]byte)) wsconn.Disconnect {
	for {
		batch, closed := s.take()
		for _, m := range batch {
			f(m)
		}
		if closed && len(batch) == 0 {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.end
		}
		if len(batch) == 0 {
			<-s.ready
		}
	}
}
