package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// readLimit protects the tool from a runaway server frame. Coalesced hubbub
// or gorilla frames are far below this.
const readLimit = 1 << 20

// writeWait bounds every write, so a stalled server cannot stall a pacer
// (and with it all the senders it drives) for longer than this.
const writeWait = 5 * time.Second

// room is one chat room of the run, as far as this process knows it.
type room struct {
	name string
	// members counts this process's clients that are in the room now. Every
	// client changes it through client.join and client.leave.
	members atomic.Int64
}

// slot is one client index of the plan. Over a churn run several
// connections (clients) occupy the same slot one after the other.
type slot struct {
	idx    int // global client index, also the sender id in markers
	room   *room
	sender bool

	// cur is the connection now in the slot, nil while there is none. It is
	// stored by the dialling goroutine and read by pacers.
	cur atomic.Pointer[client]

	// gen numbers the slot's connections for unique names. Owned by whoever
	// dials the slot: the connect phase, then the churn goroutine.
	gen int
	// seq is the last sequence number sent. Owned by the slot's pacer.
	seq uint64
}

// Client membership states; see client.state.
const (
	statePending int32 = iota // connected, not yet known to be in the room
	stateMember               // counted in room.members
	stateGone                 // left; never counted again
)

// client is one WebSocket connection. Its readLoop goroutine is the only
// reader. Data frames go through write: the slot's pacer sends messages and,
// for Centrifugo, readLoop sends the subscribe command and pongs. Close
// frames go through WriteControl, which gorilla allows concurrently with
// both.
type client struct {
	slot *slot
	conn *websocket.Conn
	// wmu serializes data writes, as gorilla allows one writer at a time.
	// Uncontended unless a protocol has the reader write too.
	wmu sync.Mutex
	// cmdID is the last Centrifugo command id used; publishes take the next
	// one. Set in dial before the pacer can see the client.
	cmdID atomic.Uint32
	// state moves pending -> member -> gone, or pending -> gone.
	state atomic.Int32
	// closing is set when the tool itself ends the connection, so the close
	// that follows is not reported as unexpected.
	closing atomic.Bool
	// done is closed by readLoop when it returns.
	done chan struct{}
}

// join counts the client as a room member, once, unless it already left.
func (c *client) join() {
	if c.state.CompareAndSwap(statePending, stateMember) {
		c.slot.room.members.Add(1)
	}
}

// leave stops counting the client as a member; later joins are ignored.
func (c *client) leave() {
	if c.state.Swap(stateGone) == stateMember {
		c.slot.room.members.Add(-1)
	}
}

// write sends one text frame, bounded by writeWait. Safe for concurrent use.
func (c *client) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
	return c.conn.WriteMessage(websocket.TextMessage, frame)
}

// hangUp starts the closing handshake from our side. It does not wait: the
// reader returns when the server answers, or when closeAll forces it.
func (c *client) hangUp(code int, text string) {
	if !c.closing.CompareAndSwap(false, true) {
		return
	}
	c.leave()
	msg := websocket.FormatCloseMessage(code, text)
	// An error means the connection is already gone; the reader sees that.
	_ = c.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
}

// frameBufs recycles read buffers. A reader holds one only while it handles
// a frame, so 10k mostly idle connections don't pin 10k buffers.
var frameBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// readLoop reads every frame of c until the connection ends, recording what
// it finds. It is the client's only reader, owns seen, and on return leaves
// the room, closes the socket, unregisters c and closes c.done.
func (b *Bench) readLoop(c *client) {
	defer b.readers.Done()
	defer close(c.done)
	defer b.unregister(c)
	defer c.conn.Close()
	defer c.leave()

	sh := b.rec.shard(c.slot.idx)
	seen := map[uint32]*seqWindow{}
	var lat []int64
	for {
		typ, r, err := c.conn.NextReader()
		if err != nil {
			b.noteEnd(c, sh, err)
			return
		}
		if typ != websocket.TextMessage {
			if _, err := io.Copy(io.Discard, r); err != nil {
				b.noteEnd(c, sh, err)
				return
			}
			continue
		}
		buf := frameBufs.Get().(*bytes.Buffer)
		buf.Reset()
		_, err = buf.ReadFrom(r)
		if err != nil {
			frameBufs.Put(buf)
			b.noteEnd(c, sh, err)
			return
		}
		now := time.Now().UnixNano()
		if b.cfg.Proto == protoHubbub {
			// The first frame (room_changed, or the "* you are" notice)
			// proves the server put us in the room.
			c.join()
		}
		w := b.win.Load()
		lat = lat[:0]
		st := splitFrame(b.cfg.Format, buf.Bytes(), func(m marker) {
			if !w.contains(m.SentNano) {
				return
			}
			sw := seen[m.Sender]
			if sw == nil {
				sw = &seqWindow{}
				seen[m.Sender] = sw
			}
			if sw.see(m.Seq) {
				b.rec.duplicates.Add(1)
				return
			}
			b.rec.measured.Add(1)
			if b.cfg.Shard.owns(int(m.Sender)) {
				b.rec.measuredOwn.Add(1)
			}
			lat = append(lat, latencyUs(m.SentNano, now))
		})
		frameBufs.Put(buf)
		b.rec.recordFrame(sh, lat, st)
		if b.cfg.Proto == protoCentrifugo {
			b.centrifugoStep(c, st)
		}
	}
}

// noteEnd classifies why c's reader stopped. Ends the tool asked for are
// normal; everything else is an unexpected close, counted by close code.
func (b *Bench) noteEnd(c *client, sh *recShard, err error) {
	if c.closing.Load() {
		return
	}
	reason := "1006 abnormal closure"
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		reason = closeReason(ce)
	}
	b.rec.recordClose(sh, reason)
	b.log.Debug("connection ended", "client", c.slot.idx, "err", err)
}

// closeReason names a close error by its code and the server's text (or a
// standard name), e.g. "1013 slow consumer".
func closeReason(ce *websocket.CloseError) string {
	text := ce.Text
	if text == "" {
		text = closeCodeNames[ce.Code]
	}
	if len(text) > 40 {
		text = text[:40]
	}
	if text == "" {
		return strconv.Itoa(ce.Code)
	}
	return fmt.Sprintf("%d %s", ce.Code, text)
}

// closeCodeNames are the RFC 6455 names of common close codes.
var closeCodeNames = map[int]string{
	websocket.CloseNormalClosure:           "normal closure",
	websocket.CloseGoingAway:               "going away",
	websocket.CloseProtocolError:           "protocol error",
	websocket.CloseUnsupportedData:         "unsupported data",
	websocket.CloseNoStatusReceived:        "no status",
	websocket.CloseAbnormalClosure:         "abnormal closure",
	websocket.CloseInvalidFramePayloadData: "invalid payload",
	websocket.ClosePolicyViolation:         "policy violation",
	websocket.CloseMessageTooBig:           "message too big",
	websocket.CloseInternalServerErr:       "internal error",
	websocket.CloseTryAgainLater:           "try again later",
}

// newDialers builds one websocket.Dialer per source address (or one without
// a source address). Buffers are small and the write buffer pooled, so an
// idle connection costs little more than its goroutine and socket.
func newDialers(cfg *Config) []*websocket.Dialer {
	pool := &sync.Pool{}
	mk := func(local net.Addr) *websocket.Dialer {
		nd := &net.Dialer{Timeout: cfg.DialTimeout, LocalAddr: local}
		return &websocket.Dialer{
			NetDialContext:   nd.DialContext,
			HandshakeTimeout: cfg.DialTimeout,
			ReadBufferSize:   cfg.ReadBuffer,
			WriteBufferSize:  1024,
			WriteBufferPool:  pool,
			// Proxy stays nil: load goes straight to the target, never
			// through a proxy from the environment.
		}
	}
	if len(cfg.SourceIPs) == 0 {
		return []*websocket.Dialer{mk(nil)}
	}
	ds := make([]*websocket.Dialer, len(cfg.SourceIPs))
	for i, a := range cfg.SourceIPs {
		ds[i] = mk(localTCPAddr(a))
	}
	return ds
}
