package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/gorilla/websocket"
)

// This file holds -proto centrifugo: the part of Centrifugo's bidirectional
// JSON client protocol (/connection/websocket) that the tool needs. Commands
// and replies are JSON objects; the server batches several replies and
// pushes in one frame, separated by '\n'. A client's life here:
//
//	-> {"id":1,"connect":{}}
//	<- {"id":1,"connect":{"client":"…","ping":25,"pong":true}}
//	-> {"id":2,"subscribe":{"channel":"bench"}}
//	<- {"id":2,"subscribe":{}}                        joined from here on
//	-> {"id":3,"publish":{"channel":"bench","data":{"text":"hb1 …"}}}
//	<- {"push":{"channel":"bench","pub":{"data":{"text":"hb1 …"},"info":{…}}}}
//	<- {"id":3,"publish":{}}
//	<- {}                                             ping, answered with {}
//
// Centrifugo closes a connection that leaves a ping unanswered (3012 "no
// pong", after its pong timeout) and one that sends a pong nobody asked for
// (3501 "bad request").

// Command ids of the handshake. Publishes take the ids after them, counted
// per connection in client.cmdID.
const (
	centrifugoConnectID   = 1
	centrifugoSubscribeID = 2
)

// centrifugoConnect is an anonymous connect command (no token), and
// centrifugoPong answers a server ping.
var (
	centrifugoConnect = []byte(`{"id":1,"connect":{}}`)
	centrifugoPong    = []byte(`{}`)
)

// The publish command around the chat text. Neither the room names nor the
// chat text need JSON escaping (letters, digits, '-' and spaces).
const (
	cfPublishID      = `{"id":`
	cfPublishChannel = `,"publish":{"channel":"`
	cfPublishText    = `","data":{"text":"`
	cfPublishEnd     = `"}}}`
)

// centrifugoPublishOverhead is the publish command without its text, at the
// longest command id (uint32) and room name ("bench-" and ten digits).
const centrifugoPublishOverhead = len(cfPublishID) + len("4294967295") + len(cfPublishChannel) +
	len("bench-") + 10 + len(cfPublishText) + len(cfPublishEnd)

// appendCentrifugoSubscribe appends the subscribe command for channel.
func appendCentrifugoSubscribe(dst []byte, channel string) []byte {
	dst = append(dst, `{"id":`...)
	dst = strconv.AppendUint(dst, centrifugoSubscribeID, 10)
	dst = append(dst, `,"subscribe":{"channel":"`...)
	dst = append(dst, channel...)
	return append(dst, `"}}`...)
}

// appendCentrifugoPublish appends the publish command with the given id that
// carries m's chat text, padded to size bytes, as {"text": …} into channel.
func appendCentrifugoPublish(dst []byte, id uint32, channel string, m marker, size int) []byte {
	dst = append(dst, cfPublishID...)
	dst = strconv.AppendUint(dst, uint64(id), 10)
	dst = append(dst, cfPublishChannel...)
	dst = append(dst, channel...)
	dst = append(dst, cfPublishText...)
	dst = appendMessage(dst, m, size)
	return append(dst, cfPublishEnd...)
}

// cfPushPrefix, cfPubText and the publish reply's ends let centrifugoLine
// read the two lines that come by the thousand, publication pushes and
// publish replies, without decoding them.
var (
	cfPushPrefix       = []byte(`{"push":{`)
	cfPubText          = []byte(`"pub":{"data":{"text":"`)
	cfPublishOKPrefix  = []byte(`{"id":`)
	cfPublishOKSuffix  = []byte(`,"publish":{}}`)
	centrifugoPingLine = []byte(`{}`)
)

// centrifugoReply is the subset of a Centrifugo reply (or push) the tool
// reads; encoding/json ignores the rest.
type centrifugoReply struct {
	ID    uint32           `json:"id"`
	Error *centrifugoError `json:"error"`
	Push  *struct {
		Pub *struct {
			Data json.RawMessage `json:"data"`
		} `json:"pub"`
		Unsubscribe *centrifugoError `json:"unsubscribe"`
		Disconnect  *centrifugoError `json:"disconnect"`
	} `json:"push"`
}

// centrifugoError is an error reply ({code, message}) or the body of an
// unsubscribe or disconnect push ({code, reason}).
type centrifugoError struct {
	Code    uint32 `json:"code"`
	Message string `json:"message"`
	Reason  string `json:"reason"`
}

// String formats e as "code text", e.g. "103 permission denied".
func (e *centrifugoError) String() string {
	text := e.Message
	if text == "" {
		text = e.Reason
	}
	return fmt.Sprintf("%d %s", e.Code, text)
}

// centrifugoCommand names the command that had id, for error counts.
func centrifugoCommand(id uint32) string {
	switch id {
	case centrifugoConnectID:
		return "connect"
	case centrifugoSubscribeID:
		return "subscribe"
	}
	return "publish"
}

// centrifugoLine reads one reply or push of a Centrifugo frame into st and
// calls fn for every benchmark message in it. Only the publication's data is
// searched for markers, so a marker-like user name in its info is not
// counted.
func (st *frameStats) centrifugoLine(line []byte, fn func(marker)) {
	if bytes.Equal(line, centrifugoPingLine) {
		st.Pings++
		return
	}
	if bytes.HasPrefix(line, cfPushPrefix) {
		// Push{id?, channel, pub{data, info, …}}: the first "pub" key with
		// unescaped quotes around it is the real one, as quotes inside
		// the channel name would be escaped.
		if i := bytes.Index(line, cfPubText); i >= 0 {
			text := line[i+len(cfPubText):]
			if end := bytes.IndexAny(text, `"\`); end >= 0 && text[end] == '"' {
				st.Markers += scanMarkers(text[:end], fn)
				return
			}
		}
	}
	if bytes.HasPrefix(line, cfPublishOKPrefix) && bytes.HasSuffix(line, cfPublishOKSuffix) {
		return // a publish went through; the push is what we measure
	}
	var r centrifugoReply
	if err := json.Unmarshal(line, &r); err != nil {
		st.addError("undecodable")
		return
	}
	switch {
	case r.Push != nil:
		p := r.Push
		switch {
		case p.Pub != nil:
			// Markers never need escaping, so they stand in the raw JSON
			// as they were sent.
			st.Markers += scanMarkers(p.Pub.Data, fn)
		case p.Unsubscribe != nil:
			st.addError("unsubscribe push " + p.Unsubscribe.String())
		case p.Disconnect != nil:
			st.addError("disconnect push " + p.Disconnect.String())
		}
	case r.Error != nil:
		st.addError(centrifugoCommand(r.ID) + " " + r.Error.String())
		if r.ID == centrifugoConnectID || r.ID == centrifugoSubscribeID {
			st.Refused = true
		}
	case r.ID == centrifugoConnectID || r.ID == centrifugoSubscribeID:
		st.Acked = append(st.Acked, r.ID)
	}
}

// centrifugoStep does what one received frame asks of c: a pong if the
// server pinged, the subscribe command once connect was accepted, the join
// once subscribe was. A refused handshake hangs up, as the client could
// never join; the refusal is already counted as a server error. Must only be
// called from c's readLoop.
func (b *Bench) centrifugoStep(c *client, st frameStats) {
	if st.Pings > 0 {
		// One pong per frame, not per ping: Centrifugo disconnects for a
		// pong it did not ask for, and pings come far enough apart (25s by
		// default) that two in one frame mean the first is already late.
		if err := c.write(centrifugoPong); err != nil {
			b.log.Debug("pong failed", "client", c.slot.idx, "err", err)
		}
	}
	for _, id := range st.Acked {
		switch id {
		case centrifugoConnectID:
			if err := c.write(appendCentrifugoSubscribe(nil, c.slot.room.name)); err != nil {
				b.log.Debug("subscribe failed", "client", c.slot.idx, "room", c.slot.room.name, "err", err)
			}
		case centrifugoSubscribeID:
			c.join()
		}
	}
	if st.Refused {
		b.log.Debug("centrifugo refused the handshake", "client", c.slot.idx, "errors", st.ServerErrors)
		c.hangUp(websocket.CloseNormalClosure, "refused")
	}
}
