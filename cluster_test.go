package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// testInterval is the presence heartbeat in cluster tests: a dead node's
// members go after about 4 of them.
const testInterval = 100 * time.Millisecond

// testCluster is an in-process NATS server with JetStream and hubbub
// nodes connected to it, each a Server behind its own httptest listener
// with its own broker connection.
type testCluster struct {
	t      *testing.T
	ns     *server.Server
	dir    string // JetStream store, kept across a NATS restart
	prefix string
	nodes  []*testServer
	brs    []*natsBroker
}

// newTestCluster starts NATS and n nodes; everything stops when the test
// ends.
func newTestCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir(), prefix: "c" + strings.ToLower(newEpoch()[:10])}
	c.ns = startNATS(t, server.RANDOM_PORT, c.dir)
	for i := range n {
		b, err := newNATSBroker(natsOptions{
			URL:           c.ns.ClientURL(),
			Prefix:        c.prefix,
			Node:          "n" + strconv.Itoa(i+1),
			History:       100,
			Interval:      testInterval,
			ReconnectWait: 50 * time.Millisecond,
			Log:           testLogger(t).With("node", i+1),
		})
		if err != nil {
			t.Fatal(err)
		}
		c.brs = append(c.brs, b)
		c.nodes = append(c.nodes, newTestServerOn(t, deployed(Config{APIKey: testKey}), deps{broker: b}))
	}
	return c
}

// kill makes node i vanish as a crashed process would: its NATS
// connection drops without a goodbye and its clients' sockets are cut.
func (c *testCluster) kill(i int) {
	c.brs[i].crash()
	c.nodes[i].ts.CloseClientConnections()
}

// crash drops b's connection without a goodbye, as a killed process would.
func (b *natsBroker) crash() {
	b.nc.Close()
	b.Close()
}

// restartNATS stops the NATS server and starts a new one on the same port
// with the same JetStream directory, after calling during while it is down.
func (c *testCluster) restartNATS(during func()) {
	c.t.Helper()
	port := c.ns.Addr().(*net.TCPAddr).Port
	c.ns.Shutdown()
	c.ns.WaitForShutdown()
	during()
	c.ns = startNATS(c.t, port, c.dir)
}

// waitReady polls until every node's Ready returns what ok accepts.
func (c *testCluster) waitReady(what string, ok func(error) bool) {
	c.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for _, s := range c.nodes {
		for !ok(s.Ready()) {
			if time.Now().After(deadline) {
				c.t.Fatalf("nodes not %s within 15s: %v", what, s.Ready())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// messagesOf reads events until n new_message payloads have arrived,
// skipping presence, history and the like, and returns them.
func (p *peer) messagesOf(n int) []messagePayload {
	p.t.Helper()
	var got []messagePayload
	for len(got) < n {
		if e := p.next(); e.Type == "new_message" {
			got = append(got, e.msg(p.t))
		}
	}
	return got
}

// historyOf reads until the history event and returns its messages.
// (joined consumes the history event; use it after dial.)
func (p *peer) historyOf() []messagePayload {
	p.t.Helper()
	var h struct {
		Messages []messagePayload `json:"messages"`
	}
	p.skipUntil("history").decode(p.t, &h)
	return h.Messages
}

// waitPresence reads until a presence event for name with event ev.
func (p *peer) waitPresence(ev, name string) {
	p.t.Helper()
	for {
		e := p.skipUntil("presence")
		var pp presencePayload
		e.decode(p.t, &pp)
		if pp.Event == ev && pp.Name == name {
			return
		}
	}
}

// members asks for the member list and returns it, skipping other events.
func (p *peer) members() roomPayload {
	p.t.Helper()
	p.sendJSON("list_members", nil)
	var rp roomPayload
	p.skipUntil("members").decode(p.t, &rp)
	return rp
}

// checkRun fails unless msgs have seqs from, from+1, … with one epoch.
func checkRun(t *testing.T, who string, msgs []messagePayload, from uint64, epoch string) {
	t.Helper()
	for i, m := range msgs {
		if m.Seq != from+uint64(i) || m.Epoch != epoch {
			t.Fatalf("%s: message %d is seq %d epoch %q; want %d %q (all: %v)", who, i, m.Seq, m.Epoch, from+uint64(i), epoch, seqs(msgs))
		}
	}
}

// TestClusterEveryoneSeesEverything: three nodes, two clients on each in
// one room and one client elsewhere. Every client in the room gets every
// message exactly once, with the same cluster-wide seqs in the same
// order; presence and member lists span the nodes; the other room hears
// nothing and numbers its own messages from 1.
func TestClusterEveryoneSeesEverything(t *testing.T) {
	c := newTestCluster(t, 3)
	var peers []*peer
	var names []string
	for i, s := range c.nodes {
		for j := range 2 {
			name := fmt.Sprintf("u%d%d", i+1, j)
			p, _ := s.joined(t, "room", "lobby", "name", name)
			peers = append(peers, p)
			names = append(names, name)
		}
	}
	outsider, _ := c.nodes[1].joined(t, "room", "other", "name", "outsider")

	// Everyone sees everyone, whichever node they are on.
	for i, p := range peers {
		deadline := time.Now().Add(10 * time.Second)
		for {
			rp := p.members()
			if slices.Equal(rp.Members, names) && rp.Count == len(names) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s sees members %v (count %d); want %v", names[i], rp.Members, rp.Count, names)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const each = 20
	for i := range each {
		for j, p := range peers {
			p.say(fmt.Sprintf("%s-%d", names[j], i))
		}
	}
	total := each * len(peers)
	var first []messagePayload
	for j, p := range peers {
		got := p.messagesOf(total)
		if j == 0 {
			first = got
			checkRun(t, names[j], got, 1, got[0].Epoch)
			continue
		}
		for i := range got {
			if got[i].Seq != first[i].Seq || got[i].Message != first[i].Message {
				t.Fatalf("%s: message %d is %d %q; %s had %d %q", names[j], i, got[i].Seq, got[i].Message,
					names[0], first[i].Seq, first[i].Message)
			}
		}
	}
	// Each sender's own messages kept their order.
	for _, name := range names {
		n := 0
		for _, m := range first {
			if m.From == name {
				if m.Message != fmt.Sprintf("%s-%d", name, n) {
					t.Fatalf("%s's message %d is %q", name, n, m.Message)
				}
				n++
			}
		}
	}

	outsider.say("alone")
	if m := outsider.messagesOf(1)[0]; m.Message != "alone" || m.Seq != 1 {
		t.Errorf("outsider got %q seq %d; want its own message, seq 1", m.Message, m.Seq)
	}
}

// TestClusterHistoryAcrossNodes: a client joining on another node gets
// the room's history from the stream, and renames and leaves on one node
// show on the others.
func TestClusterHistoryAcrossNodes(t *testing.T) {
	c := newTestCluster(t, 2)
	alice, _ := c.nodes[0].joined(t, "room", "lobby", "name", "alice")
	for i := range 5 {
		alice.say(fmt.Sprint("early ", i))
	}
	sent := alice.messagesOf(5)

	bob := c.nodes[1].dial(t, "room", "lobby", "name", "bob")
	bob.skipUntil("room_changed")
	hist := bob.historyOf()
	if len(hist) != 5 {
		t.Fatalf("bob's history has %d messages; want 5", len(hist))
	}
	checkRun(t, "bob's history", hist, 1, sent[0].Epoch)

	alice.waitPresence("join", "bob")
	bob.sendJSON("change_name", map[string]string{"name": "robert"})
	alice.waitPresence("join", "robert")
	bob.sendJSON("change_room", map[string]string{"name": "elsewhere"})
	alice.waitPresence("leave", "robert")
	if rp := alice.members(); !slices.Equal(rp.Members, []string{"alice"}) {
		t.Errorf("alice sees %v after robert left; want just alice", rp.Members)
	}
}

// TestClusterNodeDies: a node crashes. Its user leaves the others' member
// lists within a few heartbeats, reconnects to another node with since
// and epoch, and gets exactly what it missed, then live messages.
func TestClusterNodeDies(t *testing.T) {
	c := newTestCluster(t, 3)
	alice, _ := c.nodes[0].joined(t, "room", "lobby", "name", "alice")
	bob, _ := c.nodes[1].joined(t, "room", "lobby", "name", "bob")
	dave, _ := c.nodes[2].joined(t, "room", "lobby", "name", "dave")
	alice.waitPresence("join", "dave")
	bob.waitPresence("join", "dave")

	for i := range 10 {
		alice.say(fmt.Sprint("m", i))
	}
	seen := dave.messagesOf(10)
	last := seen[len(seen)-1]
	alice.messagesOf(10)
	bob.messagesOf(10)

	c.kill(2)
	alice.waitPresence("leave", "dave")
	bob.waitPresence("leave", "dave")
	if rp := alice.members(); slices.Contains(rp.Members, "dave") {
		t.Errorf("alice still lists dave after his node died: %v", rp.Members)
	}

	for i := 10; i < 20; i++ {
		alice.say(fmt.Sprint("m", i))
	}
	bob.messagesOf(10) // all 20 are in the stream before dave comes back

	dave2 := c.nodes[1].dial(t, "room", "lobby", "name", "dave",
		"since", strconv.FormatUint(last.Seq, 10), "epoch", last.Epoch)
	dave2.skipUntil("room_changed")
	missed := dave2.historyOf()
	checkRun(t, "dave's recovery", missed, last.Seq+1, last.Epoch)
	if len(missed) != 10 {
		t.Fatalf("dave recovered %d messages; want 10", len(missed))
	}
	var rec recoveryPayload
	dave2.skipUntil("recovery").decode(t, &rec)
	if !rec.Recovered {
		t.Fatalf("recovery = %+v; want recovered", rec)
	}
	alice.say("welcome back")
	if m := dave2.messagesOf(1)[0]; m.Message != "welcome back" || m.Seq != last.Seq+11 {
		t.Errorf("dave's first live message is %q seq %d; want welcome back seq %d", m.Message, m.Seq, last.Seq+11)
	}
}

// TestClusterNATSRestart: NATS goes away and comes back on the same port
// with the same JetStream directory. While it is down the nodes report
// not ready and a sender is told its message was not delivered; once it
// is back the room carries on with the next seq.
func TestClusterNATSRestart(t *testing.T) {
	c := newTestCluster(t, 2)
	alice, _ := c.nodes[0].joined(t, "room", "lobby", "name", "alice")
	bob, _ := c.nodes[1].joined(t, "room", "lobby", "name", "bob")
	alice.say("before")
	before := bob.messagesOf(1)[0]

	c.restartNATS(func() {
		c.waitReady("not ready", func(err error) bool { return err != nil })
		alice.say("during")
		e := alice.skipUntil("error")
		var pe protoError
		e.decode(t, &pe)
		if pe.Code != errNotDelivered {
			t.Errorf("error while NATS is down = %+v; want %s", pe, errNotDelivered)
		}
	})
	c.waitReady("ready", func(err error) bool { return err == nil })

	// The consumers resume on their own; retry the publish until one is
	// accepted, since the first may race the reconnect.
	deadline := time.Now().Add(15 * time.Second)
	for {
		alice.say("after")
		e := alice.next()
		for e.Type == "presence" {
			e = alice.next()
		}
		if e.Type == "new_message" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message accepted within 15s of NATS coming back; last event %s %s", e.Type, e.Payload)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m := bob.messagesOf(1)[0]
	if m.Message != "after" || m.Seq != before.Seq+1 || m.Epoch != before.Epoch {
		t.Errorf("bob's first message after the restart is %q seq %d epoch %s; want after seq %d epoch %s",
			m.Message, m.Seq, m.Epoch, before.Seq+1, before.Epoch)
	}
}

func TestClusterFlags(t *testing.T) {
	tests := []flagCase{
		{"defaults", nil, nil, func(c Config) bool {
			c = c.withDefaults()
			return c.NATSURL == "" && c.NATSPrefix == "hubbub" && c.NodeName == "" && c.PresenceInterval == 2*time.Second
		}},
		{"flags", []string{"-nats-url", "nats://n:4222", "-nats-prefix", "eu", "-node", "a1", "-presence-interval", "1s"}, nil,
			func(c Config) bool {
				return c.NATSURL == "nats://n:4222" && c.NATSPrefix == "eu" && c.NodeName == "a1" && c.PresenceInterval == time.Second
			}},
		{"env", nil, map[string]string{"HUBBUB_NATS_URL": "nats://e:4222", "HUBBUB_NODE": "b2"},
			func(c Config) bool { return c.NATSURL == "nats://e:4222" && c.NodeName == "b2" }},
	}
	checkFlagCases(t, tests)
}

// TestOpenClusterErrors: settings that cannot work are refused with
// a reason before anything starts.
func TestOpenClusterErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"data dir with nats", Config{NATSURL: "nats://127.0.0.1:4222", DataDir: t.TempDir()}, "cannot be combined"},
		{"prefix with a dot", Config{NATSURL: "nats://127.0.0.1:4222", NATSPrefix: "a.b"}, "nats prefix"},
		{"prefix with a wildcard", Config{NATSURL: "nats://127.0.0.1:4222", NATSPrefix: ">"}, "nats prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Open(tt.cfg, testLogger(t))
			if err == nil {
				s.Shutdown(context.Background())
				t.Fatalf("Open(%+v) succeeded; want an error", tt.cfg)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q; want it to mention %q", err, tt.want)
			}
		})
	}
}

// TestClusterStartsWithoutNATS: a node whose NATS is not up yet still
// starts and serves connections, reports not ready, and tells a sender
// its message was not delivered.
func TestClusterStartsWithoutNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	cfg := Config{NATSURL: url, NATSPrefix: "down"}
	b, err := openCluster(cfg.withDefaults(), testLogger(t))
	if err != nil {
		t.Fatalf("openCluster with NATS down: %v", err)
	}
	s := newTestServerOn(t, cfg, deps{broker: b})
	if err := s.Ready(); err == nil {
		t.Error("Ready() = nil with NATS down; want an error")
	}
	resp, err := http.Get(s.ts.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with NATS down = %d; want 503", resp.StatusCode)
	}
	p, _ := s.joined(t, "room", "lobby", "name", "alice")
	p.say("anyone?")
	var pe protoError
	p.skipUntil("error").decode(t, &pe)
	if pe.Code != errNotDelivered {
		t.Errorf("error = %+v; want %s", pe, errNotDelivered)
	}
}

// TestClusterAPIPublish: a message posted through the HTTP API of a node
// with nobody in the room still reaches the room's members on another
// node, marked as a bot and numbered like any other.
func TestClusterAPIPublish(t *testing.T) {
	c := newTestCluster(t, 2)
	bob, _ := c.nodes[1].joined(t, "room", "ops", "name", "bob")
	status, body := c.nodes[0].api(t, "POST", "/api/rooms/ops/messages", testKey, `{"message":"deploy done","from":"ci"}`)
	if status != http.StatusOK {
		t.Fatalf("publish on the other node = %d %s; want 200", status, body)
	}
	if m := bob.messagesOf(1)[0]; m.From != "ci" || !m.Bot || m.Message != "deploy done" || m.Seq != 1 {
		t.Errorf("bob got %+v; want the bot message from ci, seq 1", m)
	}
}

// TestClusterAckAndDedupe: in a cluster an ack carries the stream's seq
// and epoch, and a message resent with the same id to another node — as
// a client does after reconnecting elsewhere — is acked as a duplicate and
// delivered to nobody a second time. The publish API answers with seq and
// epoch too, and honours Idempotency-Key across nodes.
func TestClusterAckAndDedupe(t *testing.T) {
	c := newTestCluster(t, 2)
	a, rc := c.nodes[0].joined(t, "room", "dd", "name", "alice")
	w, _ := c.nodes[1].joined(t, "room", "dd", "name", "watch")
	if rc.Seq == nil || *rc.Seq != 0 || rc.Epoch == "" {
		t.Fatalf("room_changed of a new room: seq %v epoch %q; want 0 and the stream's epoch", rc.Seq, rc.Epoch)
	}
	a.sendID("hello", "c-1")
	ack := a.ack()
	if ack.Seq != 1 || ack.Epoch != rc.Epoch || ack.Duplicate {
		t.Fatalf("ack %+v; want seq 1 in epoch %s", ack, rc.Epoch)
	}
	// alice again, on the other node, with the same id.
	a2, _ := c.nodes[1].joined(t, "room", "dd", "name", "alice")
	a2.sendID("hello", "c-1")
	if again := a2.ack(); again.Seq != 1 || !again.Duplicate || again.Epoch != rc.Epoch {
		t.Errorf("resend on the other node: ack %+v; want seq 1, duplicate", again)
	}
	a2.sendID("after", "c-2")
	if n := a2.ack(); n.Seq != 2 || n.Duplicate {
		t.Errorf("new id: ack %+v; want seq 2", n)
	}
	got := w.messagesOf(2)
	if got[0].Message != "hello" || got[1].Message != "after" {
		t.Errorf("watcher got %q, %q; want hello, after (the resend not again)", got[0].Message, got[1].Message)
	}
	for i, node := range c.nodes {
		status, body := node.apiWithKey(t, "/api/rooms/dd/messages", `{"message":"deployed","from":"ci"}`, "rel-7")
		var res apiResult
		decodeJSONBody(t, body, &res)
		if status != 200 || res.Seq != 3 || res.Epoch != rc.Epoch || res.Duplicate != (i == 1) {
			t.Errorf("publish on node %d = %d %s; want seq 3 in epoch %s, duplicate %v", i, status, body, rc.Epoch, i == 1)
		}
	}
	if m := w.messagesOf(1)[0]; m.Message != "deployed" || m.Seq != 3 {
		t.Errorf("watcher got %+v; want the bot message once, seq 3", m)
	}
	// Without a key nothing is deduped, even the same text from the same
	// bot on two nodes at once.
	for i, node := range c.nodes {
		status, body := node.api(t, "POST", "/api/rooms/dd/messages", testKey, `{"message":"plain","from":"ci"}`)
		var res apiResult
		decodeJSONBody(t, body, &res)
		if status != 200 || res.Seq != uint64(4+i) || res.Duplicate {
			t.Errorf("keyless publish on node %d = %d %s; want seq %d, not a duplicate", i, status, body, 4+i)
		}
	}
}
