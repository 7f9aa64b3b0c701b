package main

import (
	"bytes"
	"context"
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The benchmarks here measure hubbub's hot paths one at a time; the load
// generator in cmd/hubbub-bench measures the whole server over sockets
// (docs/BENCHMARKS.md). CI runs each once (-benchtime=1x) so they cannot
// rot, which is why every setup here is bounded and quick.
//
//	go test -run '^$' -bench . -benchmem

// benchLogger discards everything: per-event logging would dominate.
var benchLogger = slog.New(slog.DiscardHandler)

// newMessagePrefix identifies chat messages among the events a fake client
// receives (its greeting and presence notices are not counted).
var newMessagePrefix = []byte(`{"type":"new_message"`)

// fakeMember is a hub client without a socket: a goroutine owned by the
// benchmark drains its memSink and reports the end as a real connection
// would, so the hub lets go of it at shutdown.
type fakeMember struct {
	c      *Client
	joined chan struct{} // closed when the first event (the greeting) arrives
}

// startFakeMember registers a socketless client in room and starts its
// drainer, which calls delivered.Done for every chat message it receives.
// The drainer exits when the hub closes the client (at Shutdown).
func startFakeMember(b testing.TB, h *Hub, room, name string, delivered *sync.WaitGroup) *fakeMember {
	sink := newMemSink(h.cfg.SendQueue)
	c := &Client{
		hub: h, format: formatJSON, addr: name, conn: sink,
		wantRoom: room, wantName: name,
	}
	m := &fakeMember{c: c, joined: make(chan struct{})}
	if !h.registerClient(c) {
		b.Fatal("hub stopped before register")
	}
	go func() {
		first := true
		end := sink.drain(func(msg []byte) {
			if first {
				close(m.joined)
				first = false
			}
			if bytes.HasPrefix(msg, newMessagePrefix) {
				delivered.Done()
			}
		})
		h.gone(c, end)
	}()
	return m
}

// BenchmarkHubFanout measures what one broadcast costs the hub: a chat
// message from one member of a room of n, encoded once and queued for all n.
// The hub runs as in production; only the sockets are missing, so the
// figure is the hub's share of a delivery (ns/delivery) plus the channel
// hand-off to each client's writer. allocs/op counts allocations per
// broadcast and stays flat as n grows (see TestBroadcastEncodesOnce).
func BenchmarkHubFanout(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run("members="+strconv.Itoa(n), func(b *testing.B) {
			// PresenceLimit 1: no join notices while n members arrive.
			cfg := Config{SendQueue: 256, PresenceLimit: 1}.withDefaults()
			h := newHub(cfg, benchLogger, deps{})
			go h.run()
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := h.Shutdown(ctx); err != nil {
					b.Errorf("hub shutdown: %v", err)
				}
			}()
			var delivered sync.WaitGroup
			members := make([]*fakeMember, n)
			for i := range members {
				members[i] = startFakeMember(b, h, "bench", "m"+strconv.Itoa(i), &delivered)
			}
			for _, m := range members {
				<-m.joined
			}
			sender := members[0].c

			// Keep at most inFlight broadcasts unfinished, far below the
			// send queue, so no drainer falls behind far enough to be
			// evicted as a slow consumer.
			const inFlight = 32
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				batch := min(inFlight, b.N-done)
				delivered.Add(batch * n)
				for range batch {
					if !h.submit(clientRequest{c: sender, cmd: sayCmd{msg: "hello, everyone"}}) {
						b.Fatal("hub stopped")
					}
				}
				delivered.Wait()
				done += batch
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			if got := h.stats.slowConsumers.Load(); got != 0 {
				b.Fatalf("%d slow-consumer evictions; the benchmark must not overrun queues", got)
			}
		})
	}
}

// broadcastRoom builds a hub that is not running and a room of n members
// with queues deep enough for rounds broadcasts, already grown to that
// depth as a busy client's queue is, so that measurements see the steady
// state rather than the queues' first growth. The caller owns the hub
// (nothing else touches it), so it may call hub methods directly.
func broadcastRoom(n, rounds int) (*Hub, *Room) {
	h := newHub(Config{}.withDefaults(), benchLogger, deps{})
	r := newRoom("bench")
	for i := range n {
		sink := newMemSink(rounds)
		sink.items = make([][]byte, 0, rounds)
		c := &Client{
			hub: h, format: formatJSON, active: true, conn: sink,
			name: "m" + strconv.Itoa(i), room: r,
		}
		r.add(c)
	}
	return h, r
}

// drainRoom empties every member's queue, keeping its array as a writer's
// spare would, so that later pushes reuse it.
func drainRoom(r *Room) {
	for m := range r.members {
		m.conn.(*memSink).discard()
	}
}

// BenchmarkBroadcastEncoding builds one chat event and hands it to every
// member of a room, without the hub goroutine or any reader: exactly the
// encode-once-share-everywhere step. allocs/op and B/op must not depend on
// the member count; ns/op grows with it only by the queueing.
func BenchmarkBroadcastEncoding(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run("members="+strconv.Itoa(n), func(b *testing.B) {
			const rounds = 64
			h, r := broadcastRoom(n, rounds)
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if i%rounds == 0 && i > 0 {
					b.StopTimer()
					drainRoom(r)
					b.StartTimer()
				}
				h.broadcast(r, messageEvent(uint64(i), r.name, "alice", "hello, everyone", now), nil)
			}
		})
	}
}

// TestBroadcastEncodesOnce proves the claim the benchmark above measures:
// a broadcast allocates the same whether the room has 100 members or 10,000,
// so the event is encoded once and the recipients share it.
func TestBroadcastEncodesOnce(t *testing.T) {
	if raceEnabled {
		t.Skip("counts allocations; the race detector adds its own (CI runs this without -race)")
	}
	now := time.Now()
	allocs := func(n int) float64 {
		h, r := broadcastRoom(n, 1)
		return testing.AllocsPerRun(20, func() {
			h.broadcast(r, messageEvent(1, r.name, "alice", "hello", now), nil)
			drainRoom(r)
		})
	}
	few, many := allocs(100), allocs(10000)
	if few == 0 {
		t.Fatal("encoding a message allocated nothing; the measurement is broken")
	}
	// Per-recipient encoding would add 9,900 allocations.
	if many != few {
		t.Errorf("broadcast to 10000 members: %v allocations; to 100 members: %v; want the same", many, few)
	}
}

// BenchmarkParseText measures text-mode input: splitting a frame into
// lines and turning each line into a request.
func BenchmarkParseText(b *testing.B) {
	frames := []struct{ name, frame string }{
		{"chat", "hello everyone, how is it going?\n"},
		{"join", "/join lobby\n"},
		{"nick", "/nick alice_2\n"},
		{"unknown", "/dance wildly\n"},
		{"multiline", "one\r\ntwo\n\nthree\n/who\n"},
	}
	for _, tt := range frames {
		b.Run(tt.name, func(b *testing.B) {
			data := []byte(tt.frame)
			b.ReportAllocs()
			for range b.N {
				for _, line := range splitLines(data) {
					if r := parseLine(line); r == nil {
						b.Fatalf("parseLine(%q) returned no op", line)
					}
				}
			}
		})
	}
}

// BenchmarkDecodeJSON measures the JSON counterpart: one browser frame.
func BenchmarkDecodeJSON(b *testing.B) {
	data := []byte(`{"type":"send_message","payload":{"message":"hello everyone, how is it going?"}}`)
	b.ReportAllocs()
	for range b.N {
		if r, _ := decodeJSON(data); r == nil {
			b.Fatal("no command")
		} else if _, ok := r.(sayCmd); !ok {
			b.Fatalf("decodeJSON = %+v; want a sayCmd", r)
		}
	}
}
