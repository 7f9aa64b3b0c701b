package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// The NATS failover test: three nats-servers in one JetStream cluster keep
// the room's stream with three replicas; three hubbub nodes reach them
// through the full -nats-url list. While ten senders chat across the
// nodes, the server that leads the room's stream, and carries a hubbub
// node's connection, is stopped: shut down (in-process servers) or killed
// (processes of the nats-server binary). Every stable member must get every
// acknowledged message exactly once, in one order shared by all; senders
// resend what got not_delivered; chat must resume within 10 s; /readyz
// must be 200 on every node again by then; and the stopped server must
// come back and catch its replica up.

const (
	failoverSenders = 10
	failoverPace    = 150 * time.Millisecond // between a sender's messages; under the flood limit
	failoverResume  = 10 * time.Second       // how soon chat must resume after the kill
)

// failMember is one WebSocket client of the failover test: it records the
// room's messages and hands its acks and errors to its sender, if any.
type failMember struct {
	name  string
	conn  *websocket.Conn
	mu    sync.Mutex
	msgs  []messagePayload
	reply chan event // ack and error events; buffered
	done  chan struct{}
	err   error // why reading stopped, once done is closed
}

// joinFailover connects name to room on node s and starts its reader.
func joinFailover(t *testing.T, s *testServer, room, name string) *failMember {
	t.Helper()
	conn, _, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", url.Values{"room": {room}, "name": {name}}), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", name, err)
	}
	m := &failMember{name: name, conn: conn, reply: make(chan event, 64), done: make(chan struct{})}
	t.Cleanup(func() { conn.Close(); <-m.done })
	joined := make(chan struct{})
	go m.read(joined)
	select {
	case <-joined:
	case <-m.done:
		t.Fatalf("%s: connection ended before joining: %v", name, m.err)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s never joined %s", name, room)
	}
	return m
}

// read records events until the connection ends.
func (m *failMember) read(joined chan struct{}) {
	defer close(m.done)
	for {
		_, data, err := m.conn.ReadMessage()
		if err != nil {
			m.err = err
			return
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			var e event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				m.err = fmt.Errorf("frame line %q: %w", line, err)
				return
			}
			switch e.Type {
			case "room_changed":
				if joined != nil {
					close(joined)
					joined = nil
				}
			case "new_message":
				var p messagePayload
				json.Unmarshal(e.Payload, &p)
				m.mu.Lock()
				m.msgs = append(m.msgs, p)
				m.mu.Unlock()
			case "ack", "error":
				select {
				case m.reply <- e:
				default:
					m.err = fmt.Errorf("%s: reply queue full", m.name)
					return
				}
			}
		}
	}
}

// messages returns what m has received so far.
func (m *failMember) messages() []messagePayload {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.msgs)
}

// failSender sends numbered messages, one at a time, resending one that
// got not_delivered with the same id until it is acknowledged.
type failSender struct {
	*failMember
	acked      []string  // texts acknowledged, in order
	resent     int       // resends after not_delivered or no answer
	firstAfter time.Time // when its first message sent after the kill was acked
}

// run sends until stop is closed, then finishes the message in hand.
func (s *failSender) run(t *testing.T, stop <-chan struct{}, killed func() (time.Time, bool)) {
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		_, afterKill := killed()
		text := fmt.Sprintf("%s %d", s.name, i)
		id := s.name + "-" + strconv.Itoa(i)
		for attempt := 0; ; attempt++ {
			if attempt > 200 {
				t.Errorf("%s: %s not acknowledged after 200 attempts", s.name, id)
				return
			}
			frame := fmt.Sprintf(`{"type":"send_message","id":%q,"payload":{"message":%q}}`, id, text)
			s.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := s.conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
				t.Errorf("%s: write: %v", s.name, err)
				return
			}
			if s.await(t, id) {
				break
			}
			s.resent++
			time.Sleep(2 * failoverPace)
		}
		s.acked = append(s.acked, text)
		s.mu.Lock()
		if afterKill && s.firstAfter.IsZero() {
			s.firstAfter = time.Now()
		}
		s.mu.Unlock()
		time.Sleep(failoverPace)
	}
}

// await waits for id's ack (true) or its not_delivered (false). Silence
// for longer than the node's publish timeout counts as not delivered.
func (s *failSender) await(t *testing.T, id string) bool {
	timeout := time.After(ackTimeout + 2*time.Second)
	for {
		select {
		case e := <-s.reply:
			switch e.Type {
			case "ack":
				var a ackPayload
				json.Unmarshal(e.Payload, &a)
				if a.ID == id {
					return true
				}
			case "error":
				var pe protoError
				json.Unmarshal(e.Payload, &pe)
				if pe.ID == id && pe.Code == errNotDelivered {
					return false
				}
				t.Errorf("%s: error %s", s.name, e.Payload)
			}
		case <-s.done:
			t.Errorf("%s: connection ended: %v", s.name, s.err)
			return true // nothing more can be sent
		case <-timeout:
			return false
		}
	}
}

// readyWatch polls /readyz of every node and keeps what it saw.
type readyWatch struct {
	mu       sync.Mutex
	last     []int    // each node's last status
	notReady []string // "node: body" of every 503 seen
}

func watchReady(nodes []*testServer, stop <-chan struct{}) (*readyWatch, *sync.WaitGroup) {
	w := &readyWatch{last: make([]int, len(nodes))}
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			client := &http.Client{Timeout: 2 * time.Second}
			for {
				select {
				case <-stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				resp, err := client.Get(n.ts.URL + "/readyz")
				if err != nil {
					continue
				}
				body := readAllBody(resp)
				w.mu.Lock()
				w.last[i] = resp.StatusCode
				if resp.StatusCode != http.StatusOK {
					w.notReady = append(w.notReady, fmt.Sprintf("n%d: %d %s", i+1, resp.StatusCode, strings.TrimSpace(body)))
				}
				w.mu.Unlock()
			}
		})
	}
	return w, &wg
}

func readAllBody(resp *http.Response) string {
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 512)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

func TestNATSFailover(t *testing.T) {
	t.Run("in-process servers, one shut down", func(t *testing.T) {
		runFailover(t, startNATSCluster(t, 3))
	})
	t.Run("nats-server processes, one killed", func(t *testing.T) {
		runFailover(t, startNATSBinaryCluster(t, debianNATSServer(t), 3))
	})
}

// runFailover runs the failover test on the three servers of nc.
func runFailover(t *testing.T, nc *natsCluster) {
	const room = "lobby"
	prefix := "f" + strings.ToLower(newEpoch()[:10])
	var nodes []*testServer
	var brs []*natsBroker
	for i := range 3 {
		b, err := newNATSBroker(natsOptions{URL: nc.urls(), Prefix: prefix, Node: "n" + strconv.Itoa(i+1),
			History: 100, Interval: testInterval, ReconnectWait: 50 * time.Millisecond,
			Log: testLogger(t).With("node", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		brs = append(brs, b)
		nodes = append(nodes, newTestServerOn(t, deployed(Config{}), deps{broker: b}))
	}
	var observers []*failMember
	for i, n := range nodes {
		observers = append(observers, joinFailover(t, n, room, "observer"+strconv.Itoa(i+1)))
	}
	var senders []*failSender
	for k := range failoverSenders {
		senders = append(senders, &failSender{failMember: joinFailover(t, nodes[k%3], room, "s"+strconv.Itoa(k))})
	}

	js := testJetStream(t, nc.urls())
	stream := prefix + "_room_" + room
	eventually(t, "the room's stream has 3 current replicas", func() bool {
		n, cur := streamReplicas(t, js, stream)
		return n == 3 && cur == 3
	})
	victim := leadConnected(t, nc, js, stream, brs)
	victimName := nc.opts[victim].ServerName
	var moved []int // nodes connected to the victim, which must fail over
	for i, b := range brs {
		if b.nc.ConnectedServerName() == victimName {
			moved = append(moved, i)
		}
	}
	t.Logf("stopping %s, the leader of %s and the server of nodes %v", victimName, stream, moved)

	var killMu sync.Mutex
	var killAt time.Time
	killed := func() (time.Time, bool) {
		killMu.Lock()
		defer killMu.Unlock()
		return killAt, !killAt.IsZero()
	}
	stopReady := make(chan struct{})
	ready, readyWG := watchReady(nodes, stopReady)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Go(func() { s.run(t, stop, killed) })
	}

	time.Sleep(2 * time.Second) // chat before the failure
	killMu.Lock()
	killAt = time.Now()
	killMu.Unlock()
	nc.stop(victim)

	// Chat resumes: every sender gets a message sent after the kill acked.
	deadline := time.Now().Add(3 * failoverResume)
	for {
		resumed := 0
		for _, s := range senders {
			if !s.firstAfterAcked() {
				continue
			}
			resumed++
		}
		if resumed == len(senders) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // a little more chat on two servers

	// The stopped server comes back and catches up.
	back := time.Now()
	nc.start(victim)
	eventually(t, "the restarted server is a current replica again", func() bool {
		_, cur := streamReplicas(t, js, stream)
		return cur == 3
	})
	t.Logf("the restarted server was current again after %v", time.Since(back).Round(time.Millisecond))
	time.Sleep(time.Second) // and chat with it back
	close(stop)
	wg.Wait()
	close(stopReady)
	readyWG.Wait()

	// Every node is ready, and every 503 on the way said why.
	for i, st := range ready.last {
		if st != http.StatusOK {
			t.Errorf("n%d: /readyz %d after the failover; want 200", i+1, st)
		}
	}
	for _, nr := range ready.notReady {
		if !strings.Contains(nr, "cluster") && !strings.Contains(nr, "jetstream") {
			t.Errorf("/readyz said %q; want the cluster link named", nr)
		}
	}
	t.Logf("/readyz not ready %d times: %.200v", len(ready.notReady), ready.notReady)

	// The nodes that were on the stopped server moved to another.
	for _, i := range moved {
		b := brs[i]
		if b.nc.Stats().Reconnects == 0 || b.nc.ConnectedServerName() == victimName || !b.nc.IsConnected() {
			t.Errorf("n%d: %d reconnects, connected %v to %q; want it moved off %s",
				i+1, b.nc.Stats().Reconnects, b.nc.IsConnected(), b.nc.ConnectedServerName(), victimName)
		}
	}

	// Chat resumed within failoverResume for every sender.
	var acked []string
	resends := 0
	for _, s := range senders {
		if s.firstAfter.IsZero() {
			t.Errorf("%s: nothing sent after the kill was acknowledged", s.name)
		} else if d := s.firstAfter.Sub(killAt); d > failoverResume {
			t.Errorf("%s: first acknowledgement after the kill took %v; want under %v", s.name, d.Round(time.Millisecond), failoverResume)
		} else {
			t.Logf("%s: resumed after %v, %d acked, %d resent", s.name, d.Round(time.Millisecond), len(s.acked), s.resent)
		}
		acked = append(acked, s.acked...)
		resends += s.resent
	}
	t.Logf("%d messages acknowledged, %d resends", len(acked), resends)

	// Every member got every acknowledged message exactly once, in one order.
	members := append([]*failMember(nil), observers...)
	for _, s := range senders {
		members = append(members, s.failMember)
	}
	eventually(t, "every member has every acknowledged message", func() bool {
		for _, m := range members {
			if len(m.messages()) < len(acked) {
				return false
			}
		}
		return true
	})
	order := map[uint64]string{} // seq -> text, the same for everyone
	for _, m := range members {
		got := m.messages()
		count := map[string]int{}
		var last uint64
		for _, p := range got {
			count[p.Message]++
			if p.Seq <= last {
				t.Errorf("%s: seq %d after %d", m.name, p.Seq, last)
			}
			last = p.Seq
			if prev, ok := order[p.Seq]; ok && prev != p.Message {
				t.Errorf("%s: seq %d is %q; another member has %q", m.name, p.Seq, p.Message, prev)
			}
			order[p.Seq] = p.Message
		}
		for _, text := range acked {
			if count[text] != 1 {
				t.Errorf("%s got %q %d times; want once", m.name, text, count[text])
			}
		}
		if len(got) != len(acked) {
			t.Errorf("%s got %d messages; %d were acknowledged", m.name, len(got), len(acked))
		}
	}
}

// firstAfterAcked reports whether a message the sender sent after the
// kill has been acknowledged. It is read while the sender runs.
func (s *failSender) firstAfterAcked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.firstAfter.IsZero()
}

// leadConnected returns the index of a server that leads stream and has a
// hubbub node connected to it, asking the leader to step down until one
// does: the failure that tests the most, both a leader election and a
// node's reconnect.
func leadConnected(t *testing.T, nc *natsCluster, js jetstream.JetStream, stream string, brs []*natsBroker) int {
	t.Helper()
	for range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := js.Stream(ctx, stream)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		leader := st.CachedInfo().Cluster.Leader
		for _, b := range brs {
			if b.nc.ConnectedServerName() == leader {
				return slices.IndexFunc(nc.opts, func(o server.Options) bool { return o.ServerName == leader })
			}
		}
		stepDown(t, brs[0], stream, leader)
	}
	t.Fatal("no hubbub node is connected to the stream's leader after 20 step-downs")
	return -1
}

// stepDown asks stream's leader to hand over and waits until another
// server leads it.
func stepDown(t *testing.T, b *natsBroker, stream, leader string) {
	t.Helper()
	if _, err := b.nc.Request("$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil, 5*time.Second); err != nil {
		t.Fatalf("step down %s: %v", stream, err)
	}
	js := b.js
	eventually(t, "a new leader for "+stream, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, stream)
		if err != nil || st.CachedInfo().Cluster == nil {
			return false
		}
		l := st.CachedInfo().Cluster.Leader
		return l != "" && l != leader
	})
}
