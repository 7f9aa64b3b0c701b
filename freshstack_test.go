package main

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestIdlePumpsKeepSmallStacks: after a connection has done real work —
// greeting written, a frame read, an answer written — and gone quiet, both
// of its pumps are parked again on the smallest goroutine stack, 2 KiB:
// the reader reads on helpers, and the writer, which wrote the answer on
// its own stack (it came right after the greeting), sheds that stack at
// its first ping once quiet. Without freshstack.go's helpers, or without
// the shedding, this measures 3-4 KiB per goroutine.
func TestIdlePumpsKeepSmallStacks(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector doubles stack needs (CI runs this without -race)")
	}
	const n = 1000
	// Pings often, so writers shed soon after activeSpell; the peers do
	// not read, so they never answer, and PongWait is long.
	ts := newTestServer(t, Config{PingPeriod: 100 * time.Millisecond, PongWait: time.Minute})
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
	// Every pump has written or read. Each writer wrote the answer on its
	// own stack (it came right after the greeting), so each hands over once
	// at a ping after activeSpell.
	deadline := time.Now().Add(activeSpell + 10*time.Second)
	for ts.hub.stats.handovers.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d writers handed over", ts.hub.stats.handovers.Load(), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stack, g := settle()
	if g-g0 < 2*n {
		t.Fatalf("%d new goroutines; want at least two pumps for each of %d connections", g-g0, n)
	}
	per := float64(stack-stack0) / float64(g-g0)
	t.Logf("%d goroutines, %.0f bytes of stack each", g-g0, per)
	// Stack spans cached by the runtime blur the count: 2.2-2.5 KiB is
	// measured with every pump at 2 KiB, 3.0 KiB with one 4 KiB pump per
	// connection, 4 KiB with two.
	if per > 2700 {
		t.Errorf("idle pumps use %.0f bytes of stack each; want about 2048 (the minimum)", per)
	}
}

func TestWriterHandoverKeepsServing(t *testing.T) {
	ts := newTestServer(t, Config{PingPeriod: 50 * time.Millisecond, PongWait: time.Minute})
	alice, _ := ts.joined(t, "name", "alice", "room", "handover")
	bob, _ := ts.joined(t, "name", "bob", "room", "handover")
	alice.skipUntil("presence") // bob joined
	say := func(from int, n int) {
		for i := from; i < from+n; i++ {
			alice.say("m" + strconv.Itoa(i))
		}
	}
	hear := func(from int, n int) {
		for i := from; i < from+n; i++ {
			if got := bob.skipUntil("new_message").msg(t).Message; got != "m"+strconv.Itoa(i) {
				t.Fatalf("bob heard %q; want m%d", got, i)
			}
		}
	}
	say(0, 20) // bob's writer is active: it writes on its own stack
	hear(0, 20)
	deadline := time.Now().Add(activeSpell + 5*time.Second)
	for ts.hub.stats.handovers.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no writer handed over after going quiet")
		}
		time.Sleep(20 * time.Millisecond)
	}
	say(20, 20)
	hear(20, 20)
	// Bob says goodbye; the server answers the close frame in kind.
	bob.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(closeNormal, "bye"))
	if code := bob.closeCode(5 * time.Second); code != closeNormal {
		t.Errorf("bob's close code after the handover %d; want %d", code, closeNormal)
	}
}
