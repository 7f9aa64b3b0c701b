package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// brokerHistory is how many messages the contract tests' room logs keep.
const brokerHistory = 5

// TestMemoryBroker runs the broker contract against the in-process bus.
func TestMemoryBroker(t *testing.T) {
	testBroker(t, func(t *testing.T) Broker {
		bus := clusterOf(t, func() any { return newMemoryBus() }).(*memoryBus)
		b := bus.node(fmt.Sprintf("n%d", nodeCount(t)))
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// TestNATSBroker runs the broker contract against a real NATS server with
// JetStream, started in-process. Each subtest is its own cluster: a
// subject prefix of its own on the shared server.
func TestNATSBroker(t *testing.T) {
	ns := startNATS(t, server.RANDOM_PORT, t.TempDir())
	testBroker(t, func(t *testing.T) Broker {
		prefix := clusterOf(t, func() any { return "t" + newEpoch()[:10] }).(string)
		b, err := newNATSBroker(natsOptions{
			URL:      ns.ClientURL(),
			Prefix:   prefix,
			Node:     fmt.Sprintf("n%d", nodeCount(t)),
			History:  brokerHistory,
			Interval: 100 * time.Millisecond,
			Log:      testLogger(t),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	})
}

// testBroker checks the Broker contract. newB returns a new node of the
// calling test's cluster: nodes made for the same *testing.T share rooms.
func testBroker(t *testing.T, newB func(*testing.T) Broker) {
	t.Run("OrderAcrossNodes", func(t *testing.T) {
		a, b := newB(t), newB(t)
		ra, rb := subscribe(t, a, "lobby"), subscribe(t, b, "lobby")
		ra.synced(t, 0)
		rb.synced(t, 0)
		const n = 40
		for i := range n {
			pub := a
			if i%2 == 1 {
				pub = b
			}
			publish(t, pub, "lobby", fmt.Sprintf("m%d", i))
		}
		for _, r := range []*recorder{ra, rb} {
			got := r.messages(t, n)
			for i, m := range got {
				if a.Sequenced() && m.Seq != uint64(i+1) {
					t.Fatalf("message %d has seq %d; want %d (gapless from 1)", i, m.Seq, i+1)
				}
			}
			if ra != r && !slices.EqualFunc(got, ra.seen, func(x, y Envelope) bool { return x.Message == y.Message }) {
				t.Errorf("nodes saw different orders")
			}
			r.quiet(t)
		}
	})
	t.Run("OutcomeAndDedupe", func(t *testing.T) {
		a, b := newB(t), newB(t)
		ra := subscribe(t, a, "dd")
		ra.synced(t, 0)
		first := outcome(t, publishID(t, a, "dd", "once", "alice/m-1"))
		ra.messages(t, 1)
		if !a.Sequenced() {
			// Unsequenced: done only says the message went out; the hub
			// numbers and dedupes it.
			if first != (Published{}) {
				t.Errorf("unsequenced outcome %+v; want the zero result", first)
			}
			return
		}
		if first.Seq != 1 || first.Epoch == "" || first.Duplicate {
			t.Errorf("outcome %+v; want seq 1, an epoch, not a duplicate", first)
		}
		// The same MsgID again, from another node: logged once, and the
		// repeat is told the first one's seq.
		again := outcome(t, publishID(t, b, "dd", "once", "alice/m-1"))
		if !again.Duplicate || again.Seq != 1 || again.Epoch != first.Epoch {
			t.Errorf("repeat's outcome %+v; want a duplicate of seq 1 in epoch %s", again, first.Epoch)
		}
		// Another id, or no id, is a new message.
		if p := outcome(t, publishID(t, b, "dd", "twice", "alice/m-2")); p.Seq != 2 || p.Duplicate {
			t.Errorf("new id's outcome %+v; want seq 2", p)
		}
		if p := outcome(t, publishID(t, a, "dd", "plain", "")); p.Seq != 3 {
			t.Errorf("no id's outcome %+v; want seq 3", p)
		}
		got := ra.messages(t, 2)
		if got[0].Message != "twice" || got[1].Message != "plain" {
			t.Errorf("delivered %q, %q after the repeat; want twice, plain (the repeat not again)", got[0].Message, got[1].Message)
		}
		ra.quiet(t)
	})
	t.Run("ReplayThenLive", func(t *testing.T) {
		a := newB(t)
		if !a.Sequenced() {
			t.Skip("the broker keeps no log to replay")
		}
		for i := range brokerHistory + 3 {
			publish(t, a, "r", fmt.Sprintf("old%d", i))
		}
		// The publishes are asynchronous; a first subscription shows when
		// the log holds them all.
		waitLast(t, a, "r", brokerHistory+3)
		r := subscribe(t, a, "r")
		replay := r.messages(t, brokerHistory)
		if replay[0].Seq != 4 || replay[0].Message != "old3" {
			t.Errorf("replay starts at seq %d %q; want 4 old3 (the last %d)", replay[0].Seq, replay[0].Message, brokerHistory)
		}
		r.synced(t, brokerHistory+3)
		publish(t, a, "r", "new")
		if m := r.messages(t, 1)[0]; m.Seq != brokerHistory+4 || m.Message != "new" {
			t.Errorf("live message = seq %d %q; want %d new", m.Seq, m.Message, brokerHistory+4)
		}
	})
	t.Run("RoomIsolation", func(t *testing.T) {
		a, b := newB(t), newB(t)
		// Rooms whose names would be wildcards or token separators if
		// they went into a subject unescaped.
		rooms := []string{"x", "x.y", "x.*", "x.>", ">", "*", "x y", "x_2Ey", "x\ty"}
		recs := map[string]*recorder{}
		for _, room := range rooms {
			recs[room] = subscribe(t, b, room)
			recs[room].synced(t, 0)
		}
		for _, room := range rooms {
			publish(t, a, room, "to "+room)
		}
		for _, room := range rooms {
			got := recs[room].messages(t, 1)[0]
			if got.Message != "to "+room || (a.Sequenced() && got.Seq != 1) || got.Room != room {
				t.Errorf("room %q got %q seq %d room %q; want its own message, seq 1", room, got.Message, got.Seq, got.Room)
			}
		}
		for _, room := range rooms {
			recs[room].quiet(t)
		}
	})
	t.Run("UnsubscribeStops", func(t *testing.T) {
		a := newB(t)
		r := subscribe(t, a, "u")
		first := r.synced(t, 0)
		a.Unsubscribe("u")
		publish(t, a, "u", "after")
		r.quiet(t)
		if !a.Sequenced() {
			return
		}
		waitLast(t, a, "u", 1)
		r2 := subscribe(t, a, "u")
		if m := r2.messages(t, 1)[0]; m.Message != "after" {
			t.Errorf("resubscribe replayed %q; want after", m.Message)
		}
		if again := r2.synced(t, 1); again.Epoch != first.Epoch {
			t.Errorf("epoch changed from %q to %q on resubscribe", first.Epoch, again.Epoch)
		}
	})
	t.Run("Presence", func(t *testing.T) {
		a, b := newB(t), newB(t)
		ups := make(chan PresenceUpdate, 100)
		b.WatchPresence(func(u PresenceUpdate) { ups <- u })
		a.SetPresence("lobby", []string{"alice", "bob"}, 2)
		u := nextUpdate(t, ups, func(u PresenceUpdate) bool { return u.Count > 0 })
		if u.Room != "lobby" || u.Count != 2 || !slices.Equal(u.Names, []string{"alice", "bob"}) {
			t.Errorf("update = %+v; want lobby [alice bob] count 2", u)
		}
		a.SetPresence("lobby", []string{"bob"}, 1)
		nextUpdate(t, ups, func(u PresenceUpdate) bool { return slices.Equal(u.Names, []string{"bob"}) })
		a.Close()
		u = nextUpdate(t, ups, func(u PresenceUpdate) bool { return u.Count == 0 })
		if u.Room != "lobby" {
			t.Errorf("after close: %+v; want lobby emptied", u)
		}
	})
	t.Run("CloseIdempotent", func(t *testing.T) {
		a := newB(t)
		subscribe(t, a, "c").synced(t, 0)
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
		if err := a.Publish(Envelope{Room: "c", Message: "x"}, func(Published) {}); !errors.Is(err, errBrokerClosed) {
			t.Errorf("publish after close = %v; want errBrokerClosed", err)
		}
	})
}

// clusters maps each test to the cluster its brokers share.
var clusters sync.Map // *testing.T -> *clusterEntry

type clusterEntry struct {
	v     any
	nodes int
}

// clusterOf returns t's cluster handle, creating it with mk on first use.
func clusterOf(t *testing.T, mk func() any) any {
	e, loaded := clusters.LoadOrStore(t, &clusterEntry{})
	ce := e.(*clusterEntry)
	if !loaded {
		ce.v = mk()
		t.Cleanup(func() { clusters.Delete(t) })
	}
	return ce.v
}

// nodeCount numbers the nodes of t's cluster.
func nodeCount(t *testing.T) int {
	e, _ := clusters.Load(t)
	ce := e.(*clusterEntry)
	ce.nodes++
	return ce.nodes
}

// recorder collects one subscription's deliveries.
type recorder struct {
	ch   chan Delivery
	seen []Envelope
}

// subscribe subscribes b to room with a recorder.
func subscribe(t *testing.T, b Broker, room string) *recorder {
	t.Helper()
	r := &recorder{ch: make(chan Delivery, 1000)}
	if err := b.Subscribe(room, func(d Delivery) {
		select {
		case r.ch <- d:
		default:
			t.Errorf("recorder for %q full", room)
		}
	}); err != nil {
		t.Fatal(err)
	}
	return r
}

// next returns the next delivery or fails after 5s.
func (r *recorder) next(t *testing.T) Delivery {
	t.Helper()
	select {
	case d := <-r.ch:
		return d
	case <-time.After(5 * time.Second):
		t.Fatalf("no delivery within 5s (%d messages seen)", len(r.seen))
		return Delivery{}
	}
}

// synced expects the synced marker with Last == last.
func (r *recorder) synced(t *testing.T, last uint64) Delivery {
	t.Helper()
	d := r.next(t)
	if d.Kind != DeliverSynced || d.Last != last {
		t.Fatalf("got %+v; want synced at %d", d, last)
	}
	return d
}

// messages expects n message deliveries.
func (r *recorder) messages(t *testing.T, n int) []Envelope {
	t.Helper()
	var got []Envelope
	for len(got) < n {
		d := r.next(t)
		if d.Kind != DeliverMessage {
			t.Fatalf("got %+v after %d messages; want %d messages", d, len(got), n)
		}
		got = append(got, d.Msg)
		r.seen = append(r.seen, d.Msg)
	}
	return got
}

// quiet fails if anything more arrives within a short wait.
func (r *recorder) quiet(t *testing.T) {
	t.Helper()
	select {
	case d := <-r.ch:
		t.Errorf("unexpected delivery %+v", d)
	case <-time.After(100 * time.Millisecond):
	}
}

// publish publishes a message and fails the test if it fails, now or later.
func publish(t *testing.T, b Broker, room, msg string) {
	t.Helper()
	publishID(t, b, room, msg, "")
}

// publishID publishes a message with MsgID id and returns a channel that
// gets its outcome; a second outcome fails the test.
func publishID(t *testing.T, b Broker, room, msg, id string) <-chan Published {
	t.Helper()
	out := make(chan Published, 2)
	var calls atomic.Int32
	err := b.Publish(Envelope{Room: room, From: "tester", Message: msg, Time: time.Now(), MsgID: id}, func(p Published) {
		if calls.Add(1) > 1 {
			t.Errorf("publish %q to %q: done called again with %+v", msg, room, p)
		}
		if p.Err != nil {
			t.Errorf("publish %q to %q failed later: %v", msg, room, p.Err)
		}
		out <- p
	})
	if err != nil {
		t.Fatalf("publish %q to %q: %v", msg, room, err)
	}
	return out
}

// outcome waits for a publish's outcome.
func outcome(t *testing.T, ch <-chan Published) Published {
	t.Helper()
	select {
	case p := <-ch:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("publish never reported its outcome")
		return Published{}
	}
}

// waitLast waits until room's log ends at last, subscribing and
// unsubscribing until the synced marker says so.
func waitLast(t *testing.T, b Broker, room string, last uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := subscribe(t, b, room)
		var d Delivery
		for d = r.next(t); d.Kind != DeliverSynced; d = r.next(t) {
		}
		b.Unsubscribe(room)
		if d.Last >= last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log of %q ends at %d; want %d", room, d.Last, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nextUpdate returns the first presence update that matches ok.
func nextUpdate(t *testing.T, ups <-chan PresenceUpdate, ok func(PresenceUpdate) bool) PresenceUpdate {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case u := <-ups:
			if ok(u) {
				return u
			}
		case <-timeout:
			t.Fatal("no matching presence update within 5s")
		}
	}
}

// startNATS runs a NATS server with JetStream in dir on port (or a random
// one) until the test ends.
func startNATS(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	return startNATSOn(t, port, true, dir)
}

func TestSubjectToken(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"general", "general"},
		{"a-b", "a-b"},
		{"a_b", "a_5Fb"},
		{"a.b", "a_2Eb"},
		{"*", "_2A"},
		{">", "_3E"},
		{"a b", "a_20b"},
		{"a\tb", "a_09b"},
		{"é", "_C3_A9"},
	}
	for _, tt := range tests {
		got, err := subjectToken(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("subjectToken(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
		if strings.ContainsAny(got, ".*> \t\r\n") {
			t.Errorf("subjectToken(%q) = %q holds a subject metacharacter", tt.in, got)
		}
	}
	if _, err := subjectToken(""); err == nil {
		t.Error("subjectToken(\"\") succeeded; want an error")
	}
	// One-to-one: distinct rooms never share a subject.
	seen := map[string]string{}
	for _, room := range []string{"a_b", "a.b", "a_2Eb", "a_5Fb", "a b"} {
		tok, _ := subjectToken(room)
		if other, dup := seen[tok]; dup {
			t.Errorf("rooms %q and %q both encode to %q", other, room, tok)
		}
		seen[tok] = room
	}
}

func TestValidPrefix(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"hubbub", true},
		{"prod_eu-1", true},
		{"", false},
		{"a.b", false},
		{"a*", false},
		{">", false},
		{"a b", false},
		{strings.Repeat("p", 33), false},
	}
	for _, tt := range tests {
		if got := validPrefix(tt.in); got != tt.want {
			t.Errorf("validPrefix(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
	if _, err := newNATSBroker(natsOptions{URL: "nats://127.0.0.1:1", Prefix: "a.b"}); err == nil {
		t.Error("newNATSBroker with prefix a.b succeeded; want an error")
	}
}
