package wsconn

import (
	"fmt"
	"runtime/debug"
	"sync"
)

// Why the reader does its deep work on a helper goroutine.
//
// An idle connection is one parked goroutine, its reader, and at tens of
// thousands of connections their stacks are a large part of the server's
// memory. A goroutine starts with a 2 KiB stack, but reading and handling
// one message (frame parsing, bufio, net, the syscall layer, then the
// handler's decoding) needs more, so the stack would grow to 4 KiB on the
// first message. It would not come back: the runtime halves a parked
// goroutine's stack at garbage collection only when less than a quarter
// of it, minus a reserve of 800 bytes, is in use — under 224 bytes of a
// 4 KiB stack, which even the reader's own frame exceeds.
//
// So the reader stays shallow and hands each message's work to a helper
// goroutine that it waits for. The helper's grown stack is freed when it
// returns, and the reader, which only waits, stays at 2 KiB. The reader is
// still the only goroutine reading the socket: it does nothing while the
// helper runs. The cost, a goroutine start and a stack growth per message,
// is small next to a client's own messages. The writer needs no helper: it
// exists only while there is something to write (writer.go).

// helperDone carries a helper's panic (or nil) back to the reader that waits
// for it. Pooled, since a reader needs one per message.
var helperDone = sync.Pool{New: func() any { return make(chan *helperPanic, 1) }}

// helperPanic is a panic caught on a helper goroutine, with the helper's
// stack, which is where it happened.
type helperPanic struct {
	value any
	stack []byte
}

func (p *helperPanic) String() string { return fmt.Sprint(p.value) }

// onFreshStack runs f on a new goroutine and waits for it to return. A
// panic in f is re-raised in the caller as a *helperPanic, so the reader's
// own recovery (read, in reader.go) handles it as if it had happened there.
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
// exactly once, panic or not, so the waiting reader can never hang.
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
