package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The chaos test: senders whose connections are cut without a close frame
// (RST) at random points reconnect, resend what was not acked with the
// same ids, and carry on; observers that stay connected must see every
// message exactly once, in each sender's order, and senders must end with
// an ack for every message.

const (
	chaosSenders  = 10
	chaosMessages = 100
	chaosWindow   = 4 // messages a sender has in flight, unacked
)

func TestChaosOneNode(t *testing.T) {
	s := newTestServer(t, deployed(Config{SendQueue: 4096, History: 2000}))
	runChaos(t, []*testServer{s})
}

func TestChaosCluster(t *testing.T) {
	c := newTestCluster(t, 3)
	runChaos(t, c.nodes)
}

// runChaos runs the senders against nodes (each reconnect moves a sender to
// the next node) and checks what two observers, on the first and the last
// node, saw.
func runChaos(t *testing.T, nodes []*testServer) {
	const room = "chaos"
	type seen struct {
		mu   sync.Mutex
		msgs []string // "sender index" in arrival order
	}
	observers := make([]*seen, 2)
	obsDone := make(chan struct{})
	var obsWG sync.WaitGroup
	for i, node := range []*testServer{nodes[0], nodes[len(nodes)-1]} {
		o := &seen{}
		observers[i] = o
		p, _ := node.joined(t, "room", room, "name", "observer"+strconv.Itoa(i))
		obsWG.Add(1)
		go func() {
			defer obsWG.Done()
			for {
				p.conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				_, data, err := p.conn.ReadMessage()
				if err != nil {
					select {
					case <-obsDone:
					default:
						t.Errorf("observer %d: %v", i, err)
					}
					return
				}
				for line := range strings.SplitSeq(string(data), "\n") {
					var e event
					if json.Unmarshal([]byte(line), &e) != nil || e.Type != "new_message" {
						continue
					}
					var m messagePayload
					json.Unmarshal(e.Payload, &m)
					o.mu.Lock()
					o.msgs = append(o.msgs, m.Message)
					done := len(o.msgs) >= chaosSenders*chaosMessages
					o.mu.Unlock()
					if done {
						return
					}
				}
			}
		}()
	}

	var wg sync.WaitGroup
	cuts := make([]int, chaosSenders)
	for k := range chaosSenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cs := &chaosSender{t: t, nodes: nodes, room: room, name: "s" + strconv.Itoa(k), node: k % len(nodes),
				rng: rand.New(rand.NewPCG(uint64(k), 7))}
			cs.run()
			cuts[k] = cs.cuts
		}()
	}
	wg.Wait()
	obsWaitDone := make(chan struct{})
	go func() { obsWG.Wait(); close(obsWaitDone) }()
	select {
	case <-obsWaitDone:
	case <-time.After(30 * time.Second):
		t.Error("observers did not get every message within 30s")
	}
	close(obsDone)
	total := 0
	for _, n := range cuts {
		total += n
	}
	t.Logf("%d senders × %d messages, %d connections cut", chaosSenders, chaosMessages, total)
	if total < chaosSenders {
		t.Errorf("only %d cuts; the test should cut every sender's connection several times", total)
	}
	for i, o := range observers {
		o.mu.Lock()
		next := make(map[string]int)
		count := make(map[string]int)
		for _, m := range o.msgs {
			count[m]++
			var who string
			var n int
			if _, err := fmt.Sscanf(m, "%s %d", &who, &n); err != nil {
				t.Errorf("observer %d got a message nobody sent: %q", i, m)
				continue
			}
			if n != next[who] {
				t.Errorf("observer %d: %s's message %d arrived when %d was next", i, who, n, next[who])
			}
			next[who] = n + 1
		}
		for m, c := range count {
			if c != 1 {
				t.Errorf("observer %d saw %q %d times; want once", i, m, c)
			}
		}
		if len(o.msgs) != chaosSenders*chaosMessages {
			t.Errorf("observer %d saw %d messages; want %d", i, len(o.msgs), chaosSenders*chaosMessages)
		}
		o.mu.Unlock()
	}
}

// chaosSender is one sender of the chaos test. Its messages are "sK I";
// their ids "sK-I".
type chaosSender struct {
	t     *testing.T
	nodes []*testServer
	room  string
	name  string
	node  int
	rng   *rand.Rand
	cuts  int

	conn     *websocket.Conn
	epoch    string
	last     uint64 // the newest seq this sender knows of, for since=
	acked    map[int]bool
	unacked  []int // sent, not acked, in order
	next     int   // next message to send for the first time
	untilCut int   // sends left before the next cut
}

// run sends every message and returns once each is acked.
func (cs *chaosSender) run() {
	cs.acked = make(map[int]bool)
	cs.untilCut = 20 + cs.rng.IntN(20)
	for attempt := 0; len(cs.acked) < chaosMessages; attempt++ {
		if attempt > 200 {
			cs.t.Errorf("%s: too many reconnects, %d of %d acked", cs.name, len(cs.acked), chaosMessages)
			return
		}
		if err := cs.connect(); err != nil {
			cs.t.Logf("%s: connect: %v", cs.name, err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		err := cs.session()
		cs.conn.Close()
		if err != nil && !errors.Is(err, errCut) {
			cs.t.Logf("%s: session ended: %v", cs.name, err)
		}
	}
}

var errCut = errors.New("cut by the test")

// connect dials the sender's current node, resuming from what it knows.
func (cs *chaosSender) connect() error {
	q := url.Values{"room": {cs.room}, "name": {cs.name}}
	if cs.epoch != "" {
		q.Set("since", strconv.FormatUint(cs.last, 10))
		q.Set("epoch", cs.epoch)
	}
	conn, _, err := websocket.DefaultDialer.Dial(cs.nodes[cs.node].wsURL("/ws", q), nil)
	if err != nil {
		return err
	}
	cs.conn = conn
	return nil
}

// session resends what is unacked, then sends new messages with a few in
// flight, until every message is acked or the test cuts the connection.
func (cs *chaosSender) session() error {
	pending := append([]int(nil), cs.unacked...)
	for _, i := range pending {
		if err := cs.send(i); err != nil {
			return err
		}
	}
	for len(cs.acked) < chaosMessages {
		for len(cs.unacked) < chaosWindow && cs.next < chaosMessages {
			i := cs.next
			cs.next++
			cs.unacked = append(cs.unacked, i)
			if err := cs.send(i); err != nil {
				return err
			}
			if cs.untilCut--; cs.untilCut <= 0 && cs.rng.IntN(2) == 0 {
				return cs.cut()
			}
		}
		if err := cs.readAck(); err != nil {
			return err
		}
		if cs.untilCut <= 0 {
			return cs.cut()
		}
	}
	return nil
}

// send writes message i.
func (cs *chaosSender) send(i int) error {
	frame := fmt.Sprintf(`{"type":"send_message","id":"%s-%d","payload":{"message":"%s %d"}}`, cs.name, i, cs.name, i)
	cs.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return cs.conn.WriteMessage(websocket.TextMessage, []byte(frame))
}

// readAck reads until one ack arrives and records it; the other events on
// the way (the room's traffic) update the resume point.
func (cs *chaosSender) readAck() error {
	for {
		cs.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := cs.conn.ReadMessage()
		if err != nil {
			return err
		}
		got := false
		for line := range strings.SplitSeq(string(data), "\n") {
			var e event
			if err := json.Unmarshal([]byte(line), &e); err != nil {
				return fmt.Errorf("bad frame line %q: %w", line, err)
			}
			switch e.Type {
			case "room_changed":
				var rp roomPayload
				json.Unmarshal(e.Payload, &rp)
				if rp.Epoch != cs.epoch {
					cs.epoch, cs.last = rp.Epoch, 0
				}
			case "new_message":
				var m messagePayload
				json.Unmarshal(e.Payload, &m)
				cs.epoch, cs.last = m.Epoch, max(cs.last, m.Seq)
			case "ack":
				var a ackPayload
				json.Unmarshal(e.Payload, &a)
				i, err := strconv.Atoi(strings.TrimPrefix(a.ID, cs.name+"-"))
				if err != nil {
					return fmt.Errorf("ack for an id not ours: %q", a.ID)
				}
				cs.acked[i] = true
				for j, u := range cs.unacked {
					if u == i {
						cs.unacked = append(cs.unacked[:j], cs.unacked[j+1:]...)
						break
					}
				}
				got = true
			case "error":
				var pe protoError
				json.Unmarshal(e.Payload, &pe)
				switch {
				case pe.ID == "":
					// About the connection, not a message: name_taken when
					// the cut connection still held the name.
				case pe.Code == errNotDelivered:
					return fmt.Errorf("%s not delivered; resending after a reconnect", pe.ID)
				default:
					cs.t.Errorf("%s: error for %s: %s", cs.name, pe.ID, e.Payload)
				}
			}
		}
		if got {
			return nil
		}
	}
}

// cut resets the TCP connection — no close frame, no FIN — and moves the
// sender to the next node for its reconnect.
func (cs *chaosSender) cut() error {
	cs.cuts++
	cs.untilCut = 20 + cs.rng.IntN(20)
	if tc, ok := cs.conn.NetConn().(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	cs.conn.NetConn().Close()
	cs.node = (cs.node + 1) % len(cs.nodes)
	return errCut
}
