package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
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

// testSignalWait is the contract tests' signal wait: long enough for every
// live node to answer, short enough to wait for one that does not.
const testSignalWait = 400 * time.Millisecond

// TestMemoryBroker runs the broker contract against the in-process bus.
func TestMemoryBroker(t *testing.T) {
	testBroker(t, func(t *testing.T) Broker {
		bus := clusterOf(t, func() any {
			bus := newMemoryBus()
			bus.signalWait = testSignalWait
			return bus
		}).(*memoryBus)
		b := bus.node(fmt.Sprintf("n%d", nodeCount(t)))
		b.start() // as the hub does when it begins to run
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
			URL:        ns.ClientURL(),
			Prefix:     prefix,
			Node:       fmt.Sprintf("n%d", nodeCount(t)),
			History:    brokerHistory,
			Interval:   100 * time.Millisecond,
			SignalWait: testSignalWait,
			Log:        testLogger(t),
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
		a.SetPresence("lobby", []string{"alice", "bob"}, 2, nil)
		u := nextUpdate(t, ups, func(u PresenceUpdate) bool { return u.Count > 0 })
		if u.Room != "lobby" || u.Count != 2 || !slices.Equal(u.Names, []string{"alice", "bob"}) {
			t.Errorf("update = %+v; want lobby [alice bob] count 2", u)
		}
		// alice is kicked: the update that drops her says so.
		a.SetPresence("lobby", []string{"bob"}, 1, map[string]LeaveMark{"alice": {By: "mo", Reason: "spam", Banned: true}})
		u = nextUpdate(t, ups, func(u PresenceUpdate) bool { return slices.Equal(u.Names, []string{"bob"}) })
		if m := u.Gone["alice"]; m != (LeaveMark{By: "mo", Reason: "spam", Banned: true}) {
			t.Errorf("update dropping alice: %+v; want her leave marked banned by mo for spam", u)
		}
		// Marks belong to the change that carried them, not to later ones.
		a.SetPresence("lobby", []string{"bob", "carol"}, 2, nil)
		if u = nextUpdate(t, ups, func(u PresenceUpdate) bool { return u.Count == 2 }); len(u.Gone) != 0 {
			t.Errorf("a later update carries %v; want no marks", u.Gone)
		}
		a.Close()
		u = nextUpdate(t, ups, func(u PresenceUpdate) bool { return u.Count == 0 })
		if u.Room != "lobby" {
			t.Errorf("after close: %+v; want lobby emptied", u)
		}
	})
	t.Run("Records", func(t *testing.T) {
		a, b := newB(t), newB(t)
		wa, wb := watchRecords(t, a), watchRecords(t, b)
		wa.synced(t)
		wb.synced(t)
		const key = "ban.room.lobby.bob"
		rev1 := putRecord(t, a, key, `{"v":1}`)
		for _, w := range []*recordWatch{wa, wb} {
			w.expect(t, RecordPut, key, `{"v":1}`, rev1, true)
		}
		// A node that starts watching later is given the state as it is.
		c := newB(t)
		wc := watchRecords(t, c)
		wc.expect(t, RecordPut, key, `{"v":1}`, rev1, false)
		wc.synced(t)

		rev2 := putRecord(t, b, key, `{"v":2}`)
		if rev2 <= rev1 {
			t.Errorf("second put has revision %d after %d; want a greater one", rev2, rev1)
		}
		for _, w := range []*recordWatch{wa, wb, wc} {
			w.expect(t, RecordPut, key, `{"v":2}`, rev2, true)
		}
		// Deleting the old revision changes nothing: the new one stays.
		if err := deleteRecord(t, a, key, rev1); !errors.Is(err, errRecordChanged) {
			t.Errorf("delete of revision %d after a newer put = %v; want errRecordChanged", rev1, err)
		}
		for _, w := range []*recordWatch{wa, wb, wc} {
			w.quiet(t)
		}
		if err := deleteRecord(t, c, key, rev2); err != nil {
			t.Errorf("delete of the current revision: %v", err)
		}
		for _, w := range []*recordWatch{wa, wb, wc} {
			w.expect(t, RecordDeleted, key, "", 0, true)
		}
		// Revision 0 deletes whatever is there.
		putRecord(t, a, "slow.lobby", `{}`)
		if err := deleteRecord(t, b, "slow.lobby", 0); err != nil {
			t.Errorf("unconditional delete: %v", err)
		}
		for _, w := range []*recordWatch{wa, wb, wc} {
			w.expect(t, RecordPut, "slow.lobby", `{}`, 0, true)
			w.expect(t, RecordDeleted, "slow.lobby", "", 0, true)
		}
		for _, bad := range []string{"", "a..b", ".a", "a.", "a b", "a.*", "a.>"} {
			if err := a.PutRecord(bad, nil, func(uint64, error) {}); !errors.Is(err, errBadRecordKey) {
				t.Errorf("PutRecord(%q) = %v; want errBadRecordKey", bad, err)
			}
		}
	})
	t.Run("SignalsBeforeWatching", func(t *testing.T) {
		// A node answers 0 until it watches signals: it has no
		// connections a signal could act on.
		a := newB(t)
		if sum, answered := sendSignal(t, a, Signal{Kind: "dm", Body: []byte(`{}`)}); sum != 0 || answered != 1 {
			t.Errorf("unwatched node: sum %d from %d nodes; want 0 from 1", sum, answered)
		}
	})
	t.Run("Signals", func(t *testing.T) {
		nodes := []Broker{newB(t), newB(t), newB(t), newB(t)}
		answers := []int{1, 2, 0, 5}
		got := make([]chan Signal, len(nodes))
		for i, n := range nodes {
			got[i] = make(chan Signal, 100)
			n.WatchSignals(func(s Signal, answer func(int)) {
				got[i] <- s
				if s.Kind != "quiet" || i != 3 { // node 3 does not answer "quiet"
					answer(answers[i])
				}
			})
		}
		// Nodes learn of each other (presence): probe until all answer.
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, answered := sendSignal(t, nodes[0], Signal{Kind: "probe"})
			if answered == len(nodes) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d nodes answer a signal after 10s", answered, len(nodes))
			}
			time.Sleep(50 * time.Millisecond)
		}
		for _, ch := range got {
			for len(ch) > 0 {
				<-ch
			}
		}
		body := json.RawMessage(`{"name":"bob","reason":"spam"}`)
		if sum, answered := sendSignal(t, nodes[1], Signal{Kind: "kick", Body: body}); sum != 8 || answered != 4 {
			t.Errorf("kick: sum %d from %d nodes; want 8 from 4", sum, answered)
		}
		for i, ch := range got {
			select {
			case s := <-ch:
				if s.Kind != "kick" || string(s.Body) != string(body) {
					t.Errorf("node %d got %+v; want the kick with its body", i, s)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("node %d never got the signal", i)
			}
		}
		// A node that does not answer is waited for, up to the wait.
		start := time.Now()
		sum, answered := sendSignal(t, nodes[0], Signal{Kind: "quiet"})
		if sum != 3 || answered != 3 {
			t.Errorf("with a silent node: sum %d from %d nodes; want 3 from 3", sum, answered)
		}
		if waited := time.Since(start); waited < testSignalWait/2 {
			t.Errorf("gave up on the silent node after %v; want about %v", waited, testSignalWait)
		}
		// Without done, a signal is delivered and nobody waits.
		if err := nodes[2].Signal(Signal{Kind: "fire"}, nil); err != nil {
			t.Fatal(err)
		}
		for i, ch := range got {
			for s := range ch {
				if s.Kind == "fire" {
					break
				}
				if s.Kind != "quiet" {
					t.Errorf("node %d got %q; want fire", i, s.Kind)
				}
			}
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

// recordWatch collects one broker's record updates.
type recordWatch struct{ ch chan RecordUpdate }

// watchRecords starts watching b's records.
func watchRecords(t *testing.T, b Broker) *recordWatch {
	w := &recordWatch{ch: make(chan RecordUpdate, 100)}
	b.WatchRecords(func(u RecordUpdate) {
		select {
		case w.ch <- u:
		default:
			t.Errorf("record watch full")
		}
	})
	return w
}

// next returns the next update or fails after 5s.
func (w *recordWatch) next(t *testing.T) RecordUpdate {
	t.Helper()
	select {
	case u := <-w.ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no record update within 5s")
		return RecordUpdate{}
	}
}

// synced expects the synced marker.
func (w *recordWatch) synced(t *testing.T) {
	t.Helper()
	if u := w.next(t); u.Kind != RecordsSynced {
		t.Fatalf("got %+v; want the synced marker", u)
	}
}

// expect expects an update of kind for key with value (puts) and revision
// rev (0: any), live or not.
func (w *recordWatch) expect(t *testing.T, kind RecordKind, key, value string, rev uint64, live bool) {
	t.Helper()
	u := w.next(t)
	if u.Kind != kind || u.Record.Key != key || string(u.Record.Value) != value || u.Live != live ||
		(rev != 0 && u.Record.Rev != rev) {
		t.Fatalf("got %+v (value %s); want kind %d of %s = %s at revision %d, live %v", u, u.Record.Value, kind, key, value, rev, live)
	}
}

// quiet fails if an update arrives within a short wait.
func (w *recordWatch) quiet(t *testing.T) {
	t.Helper()
	select {
	case u := <-w.ch:
		t.Errorf("unexpected record update %+v", u)
	case <-time.After(100 * time.Millisecond):
	}
}

// putRecord puts key and returns its revision, failing on any error.
func putRecord(t *testing.T, b Broker, key, value string) uint64 {
	t.Helper()
	type res struct {
		rev uint64
		err error
	}
	ch := make(chan res, 2)
	if err := b.PutRecord(key, []byte(value), func(rev uint64, err error) { ch <- res{rev, err} }); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	select {
	case r := <-ch:
		if r.err != nil || r.rev == 0 {
			t.Fatalf("put %s: revision %d, %v", key, r.rev, r.err)
		}
		return r.rev
	case <-time.After(10 * time.Second):
		t.Fatalf("put %s never reported", key)
		return 0
	}
}

// deleteRecord deletes key at rev and returns the outcome.
func deleteRecord(t *testing.T, b Broker, key string, rev uint64) error {
	t.Helper()
	ch := make(chan error, 2)
	if err := b.DeleteRecord(key, rev, func(err error) { ch <- err }); err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("delete %s never reported", key)
		return nil
	}
}

// sendSignal sends s from b and returns what its done heard, failing if done
// is called from inside Signal or more than once.
func sendSignal(t *testing.T, b Broker, s Signal) (sum, answered int) {
	t.Helper()
	type res struct{ sum, answered int }
	ch := make(chan res, 2)
	err := b.Signal(s, func(sum, answered int) {
		if calledFrom("hubbub.sendSignal") {
			t.Errorf("signal %s: done called from inside Signal", s.Kind)
		}
		ch <- res{sum, answered}
	})
	if err != nil {
		t.Fatalf("signal %s: %v", s.Kind, err)
	}
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("signal %s: done never called", s.Kind)
	}
	select {
	case again := <-ch:
		t.Errorf("signal %s: done called again with %+v", s.Kind, again)
	case <-time.After(50 * time.Millisecond):
	}
	return r.sum, r.answered
}

// calledFrom reports whether the function named fn is on the caller's
// stack: whether the caller runs inside a call of fn on its goroutine,
// which a flag set around the call cannot tell from another goroutine
// that merely runs at the same time.
func calledFrom(fn string) bool {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	for {
		f, more := frames.Next()
		if f.Function == fn {
			return true
		}
		if !more {
			return false
		}
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

// TestNATSNewcomerKnowsEveryNode: a node that starts after the others
// learns of them at once, not at their next heartbeat, so that its first
// signals (a direct message, a kick) wait for every node's answer. The
// heartbeat here is an hour: only the answer to its arrival can teach it.
func TestNATSNewcomerKnowsEveryNode(t *testing.T) {
	ns := startNATS(t, server.RANDOM_PORT, t.TempDir())
	prefix := "t" + newEpoch()[:10]
	start := func(node string) *natsBroker {
		b, err := newNATSBroker(natsOptions{URL: ns.ClientURL(), Prefix: prefix, Node: node, History: brokerHistory,
			Interval: time.Hour, SignalWait: 5 * time.Second, Log: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	old := start("old")
	eventually(t, "the first node is up", func() bool { return old.Ready() == nil })
	fresh := start("fresh")
	eventually(t, "the newcomer knows the node that was there before it", func() bool { return fresh.peers.Load() == 1 })
	// And so a signal from it waits for both answers.
	old.WatchSignals(func(_ Signal, answer func(int)) { answer(2) })
	fresh.WatchSignals(func(_ Signal, answer func(int)) { answer(1) })
	got := make(chan [2]int, 1)
	if err := fresh.Signal(Signal{Kind: "dm", Body: []byte(`{}`)}, func(sum, answered int) { got <- [2]int{sum, answered} }); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r != [2]int{3, 2} {
			t.Errorf("signal answered %v (sum, nodes); want [3 2]", r)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("signal never finished")
	}
}
