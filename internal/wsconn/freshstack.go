package main

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// Why the pumps do their deep work on a helper goroutine.
//
// An idle connection is two parked goroutines, and at tens of thousands of
// connections their stacks are a third of the server's memory. A goroutine
// starts with a 2 KiB stack, but reading or writing one frame through
// gorilla, bufio, net and the syscall layer needs more, so the stack grows
// to 4 KiB on the first frame. It does not come back: the runtime halves a
// parked goroutine's stack at garbage collection only when less than a
// quarter of it, minus a reserve of 800 bytes, is in use — under 224 bytes
// of a 4 KiB stack, which even a pump's own frame exceeds.
//
// So the pumps stay shallow and hand a frame's work to a helper goroutine
// that they wait for. The helper's grown stack is freed when it returns,
// and the pump, which only waits, stays at 2 KiB. The pump is still the
// only reader or writer of its connection: it does nothing while the helper
// runs. readPump does this for every frame. The cost, a goroutine start and
// a stack growth per frame, is small for a client's own messages but showed
// in p99 when every write to every client paid it under load (see
// docs/BENCHMARKS.md), so writePump uses a helper only for a quiet client
// and otherwise writes itself, then sheds its grown stack by handing over
// to a fresh goroutine once the client is quiet (writeLoop in client.go).

// helperDone carries a helper's panic (or nil) back to the pump that waits
// for it. Pooled, since a pump may need one per frame.
var helperDone = sync.Pool{New: func() any { return make(chan *helperPanic, 1) }}

// helperPanic is a panic caught on a helper goroutine, with the helper's
// stack, which is where it happened.
type helperPanic struct {
	value any
	stack []byte
}

func (p *helperPanic) String() string { return fmt.Sprint(p.value) }

// onFreshStack runs f on a new goroutine and waits for it to return. A
// panic in f is re-raised in the caller as a *helperPanic, so the pump's
// own recovery (panics.go) handles it as if it had happened there.
func onFreshStack(f func()) {
	done := helperDone.Get().(chan *helperPanic)
	go runHelper(f, done)
	p := <-done
	helperDone.Put(done)
	if p != nil {
		panic(p)
	}
}

// runHelper is the body of onFreshStack's goroutine. It always sends
// exactly once, panic or not, so the waiting pump can never hang.
func runHelper(f func(), done chan<- *helperPanic) {
	var p *helperPanic
	defer func() { done <- p }()
	defer func() {
		if v := recover(); v != nil {
			p = &helperPanic{value: v, stack: debug.Stack()}
		}
	}()
	f()
}
