package main

import (
	"runtime"
	"strconv"
	"testing"
	"time"
)

// TestIdlePumpsKeepSmallStacks: after a connection has done real work —
// greeting written, a frame read, an answer written — both of its pumps are
// parked again on the smallest goroutine stack, 2 KiB. Without the helpers
// of freshstack.go, writing or reading one frame grows a pump to 4 KiB for
// good and this measures about 3 KiB per goroutine.
func TestIdlePumpsKeepSmallStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector doubles stack needs (CI runs this without -race)")
	}
	const n = 200
	ts := newTestServer(t, Config{})
	settle := func() (stack uint64, goroutines int) {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.StackInuse, runtime.NumGoroutine()
	}
	stack0, g0 := settle()
	peers := make([]*peer, n)
	for i := range peers {
		// A room each, so every peer reads just its own message back.
		p := ts.dial(t, "room", "stack"+strconv.Itoa(i), "name", "p"+strconv.Itoa(i))
		p.skipUntil("room_changed")
		p.say("hello")
		if got := p.skipUntil("new_message").msg(t).Message; got != "hello" {
			t.Fatalf("peer %d got %q; want its own message", i, got)
		}
		peers[i] = p
	}
	// Every pump has written or read and is parking again.
	deadline := time.Now().Add(5 * time.Second)
	var stack uint64
	var g int
	for {
		stack, g = settle()
		if g-g0 >= 2*n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if g-g0 < 2*n {
		t.Fatalf("%d new goroutines; want at least two pumps for each of %d connections", g-g0, n)
	}
	per := float64(stack-stack0) / float64(g-g0)
	t.Logf("%d goroutines, %.0f bytes of stack each", g-g0, per)
	if per > 3000 { // halfway: stack spans cached by the runtime blur the count
		t.Errorf("idle pumps use %.0f bytes of stack each; want about 2048 (the minimum)", per)
	}
}
