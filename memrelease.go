package main

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// A WebSocket handshake allocates several times what the connection keeps:
// net/http's 4 KiB reader and writer, the request, its headers and URL. The
// garbage collector frees that memory, but the process keeps the pages, so
// after a burst of connections RSS stays at the burst's peak. memReleaser
// watches for the end of a burst and then returns freed memory to the
// system once.
type memReleaser struct {
	// accepted counts upgraded connections. Written by serveWs, read by run.
	accepted atomic.Uint64
	// release is the function run calls at the end of a burst;
	// releaseMemory outside tests.
	release func()
	// burst and quiet define the end of a burst: at least burst connections
	// since the last release, then none for quiet.
	burst uint64
	quiet time.Duration
	done  chan struct{} // closed when run returns
}

// Defaults of memReleaser.burst and quiet.
const (
	releaseBurst = 1000
	releaseQuiet = time.Second
)

// newMemReleaser returns a releaser; the caller starts run.
func newMemReleaser() *memReleaser {
	return &memReleaser{release: releaseMemory, burst: releaseBurst, quiet: releaseQuiet, done: make(chan struct{})}
}

// releaseMemory collects garbage and returns free memory to the system
// (FreeOSMemory does both). The collection at 19,000 connections takes a
// few milliseconds of one core, once per burst. It does nothing for
// goroutine stacks: a connection's reader stays at 2 KiB by itself
// (internal/wsconn/freshstack.go), and it has no writer while idle.
func releaseMemory() {
	debug.FreeOSMemory()
}

// noteAccepted counts one new connection. Safe from any goroutine.
func (m *memReleaser) noteAccepted() { m.accepted.Add(1) }

// run checks once per quiet period whether a burst has ended, until stop is
// closed. It is the releaser's only goroutine.
func (m *memReleaser) run(stop <-chan struct{}) {
	defer close(m.done)
	t := time.NewTicker(m.quiet)
	defer t.Stop()
	var released, seen uint64 // counts at the last release and the last tick
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		n := m.accepted.Load()
		if n == seen && n-released >= m.burst {
			m.release()
			released = n
		}
		seen = n
	}
}
