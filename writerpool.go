package main

import (
	"runtime"
	"sync"
)

// writerPool runs writePumps' socket writes on a few long-lived goroutines.
//
// Why: writing a frame goes deep (gorilla's frame writer, batchConn, the
// net package, the syscall), and a goroutine that has been that deep keeps a
// 4 KiB stack for good: the runtime halves a parked goroutine's stack only
// when it uses under a quarter of it, which writePump's own frames never do
// below 4 KiB. A writePump that hands each write to a pool worker and waits
// stays at the minimum 2 KiB, and at 19,000 idle connections (each written
// to at least once, for its greeting and its pings) that is 38 MB less.
//
// A write still belongs to exactly one writePump, which waits for it, so
// the one-writer-per-connection rule holds. When no worker is idle (under
// load, or while workers are stuck on slow peers) the writePump writes
// itself: the pool saves memory on idle connections and never queues.
type writerPool struct {
	jobs    chan writeJob // unbuffered: a send succeeds only when a worker is idle
	stop    chan struct{} // closed by close
	workers sync.WaitGroup
}

// writeJob is one write for a worker: run f, then signal done.
type writeJob struct {
	f    func()
	done chan<- struct{}
}

// newWriterPool returns a pool with no workers yet; start launches them.
// A pool that was never started runs every write inline.
func newWriterPool() *writerPool {
	return &writerPool{jobs: make(chan writeJob), stop: make(chan struct{})}
}

// start launches the workers: two per processor, enough to keep every core
// writing while a few wait on slow peers.
func (p *writerPool) start() {
	n := 2 * runtime.GOMAXPROCS(0)
	p.workers.Add(n)
	for range n {
		go p.work()
	}
}

// work runs jobs until close.
func (p *writerPool) work() {
	defer p.workers.Done()
	for {
		select {
		case j := <-p.jobs:
			j.f()
			j.done <- struct{}{}
		case <-p.stop:
			return
		}
	}
}

// close stops the workers and waits for them. The caller makes sure no
// writePump is left that could still hand in a job.
func (p *writerPool) close() {
	close(p.stop)
	p.workers.Wait()
}

// do runs f on an idle worker and waits for it to finish, or runs it on the
// calling goroutine when no worker is idle. done must be buffered (1) and
// owned by the caller; it is reused across calls.
func (p *writerPool) do(f func(), done chan struct{}) {
	select {
	case p.jobs <- writeJob{f: f, done: done}:
		<-done
	default:
		f()
	}
}
