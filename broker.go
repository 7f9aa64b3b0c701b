package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Broker carries chat messages, presence, moderation state and signals
// between the hubs of a cluster.
// The hub publishes every chat message to the broker and delivers only what
// comes back from it, so there is one delivery route whether a cluster has
// one node (memoryBroker, the default) or many (natsBroker).
//
// The contract, which broker_test.go checks against every implementation:
//
//   - Sequenced reports whether the broker keeps a log of each room and
//     numbers its messages for the whole cluster. A broker that does not
//     (memoryBroker: one process) delivers Seq 0 and an empty Epoch, and
//     the hub numbers messages itself in the order they are delivered.
//   - Publish delivers m to every subscription of its room on every node,
//     including the publisher's own, in one order that every node sees. A
//     sequenced broker first appends m to the room's log, which assigns the
//     room's next seq (1, 2, 3, … with no gaps for the whole cluster).
//     Publish never blocks on the network or on a subscriber: it queues the
//     message and returns. If the message cannot even be queued it returns
//     an error and nothing was stored. Otherwise done is called exactly
//     once, from a broker goroutine and never from inside Publish (so that
//     the hub can act on it without blocking on itself): with Err if it
//     failed later (the cluster link is down, the store refused it); else,
//     for a sequenced broker, once the message is in the room's log, with
//     its Seq and the log's Epoch; for an unsequenced broker with a zero
//     result once the message is queued for every subscriber.
//   - A sequenced broker remembers the MsgID of each message for a while
//     (DedupeWindow): a message whose non-empty MsgID it has already
//     logged in that time is not logged or delivered again, and done
//     reports Duplicate with the first one's Seq. An unsequenced broker
//     ignores MsgID; the hub dedupes for it.
//   - Subscribe starts delivering a room to fn: first the newest messages
//     of the room's log (the replay, oldest first; none if not sequenced),
//     then one Synced delivery that carries the room's epoch and the seq the
//     replay ended at, then each new message once, in order. Every message
//     delivery of a sequenced broker carries the epoch too. It returns at once;
//     setup that needs the network runs in the background and retries until
//     it works or the subscription ends. A room has at most one
//     subscription per broker.
//   - Unsubscribe ends the room's subscription without blocking. A few
//     deliveries may still arrive after it returns; the hub drops them by
//     subscription id.
//   - fn and the presence callback are called from broker goroutines, one
//     at a time per room (presence: one at a time overall). They must not
//     block for long and must not touch hub state: the hub's callbacks only
//     hand the delivery to the hub's inbound channel, selecting on the hub's
//     done channel.
//   - SetPresence records this node's members of a room (count of them, and
//     some or all of their names; count 0: none) and tells the other nodes,
//     without blocking; gone (may be nil) marks names that left because of
//     a kick or ban, and reaches the other nodes, in the update that drops
//     those names, at least once before the next heartbeat. WatchPresence
//     registers the callback that hears about other nodes' members: one
//     PresenceUpdate per node and room whose names changed, including an
//     empty one when a node leaves the cluster or falls silent for the
//     broker's presence timeout.
//   - Records are the cluster's moderation state (moderation.go): a key
//     ([A-Za-z0-9_-] tokens joined by '.') and a value the broker does
//     not read. PutRecord sets a key for every node and DeleteRecord
//     removes it, without blocking; rev 0 deletes whatever is there, any
//     other rev only the version that has that revision (so that a node
//     removing an expired entry never removes a newer one put meanwhile:
//     done then reports errRecordChanged and nothing changes). Every
//     change gets a revision, greater than any before it. done is called
//     once from a broker goroutine, as for Publish. A sequenced broker
//     keeps the records durably; an unsequenced one as long as its
//     process, and the hub keeps them on disk itself (-data-dir).
//   - WatchRecords registers the one callback that hears about records:
//     first every record there is (Live false), then RecordsSynced, then
//     every change as it happens (Live true), each once and in revision
//     order. A broker that loses its watch and must start over delivers
//     RecordsReset, then the whole state again and RecordsSynced: whatever
//     the watcher holds that the new state lacks is gone.
//   - Signal sends s to every node, the sender's included, without
//     blocking; it is not kept anywhere. Each node's signal callback gets
//     it once with an answer function, which the node calls once, from any
//     goroutine and without blocking, with a count of its own (how many
//     connections it delivered to); a node that does not watch signals
//     answers 0. If done is not nil it is called once, from a broker
//     goroutine, with the sum of the answers and how many nodes answered:
//     as soon as every node the broker knows of has answered, and at the
//     latest after the broker's signal wait. This is how a node learns
//     whether a direct message reached anyone.
//   - Ready reports whether the broker can currently share messages with
//     the cluster; nil means yes. A broker with a records watcher is not
//     ready until the initial state has been delivered.
//   - Close stops every goroutine the broker started and releases its
//     connection. It is idempotent, and after it Publish returns
//     errBrokerClosed.
type Broker interface {
	Sequenced() bool
	Publish(m Envelope, done func(Published)) error
	Subscribe(room string, fn func(Delivery)) error
	Unsubscribe(room string)
	SetPresence(room string, names []string, count int, gone map[string]LeaveMark)
	WatchPresence(fn func(PresenceUpdate))
	PutRecord(key string, value []byte, done func(rev uint64, err error)) error
	DeleteRecord(key string, rev uint64, done func(error)) error
	WatchRecords(fn func(RecordUpdate))
	Signal(s Signal, done func(sum, answered int)) error
	WatchSignals(fn func(s Signal, answer func(n int)))
	Ready() error
	Close() error
}

// Record is one entry of the cluster's moderation state.
type Record struct {
	Key   string
	Value []byte
	Rev   uint64 // the revision of this version of the key
}

// RecordKind says what a RecordUpdate carries.
type RecordKind uint8

const (
	// RecordPut sets Record.Key to Record.Value.
	RecordPut RecordKind = iota + 1
	// RecordDeleted removes Record.Key.
	RecordDeleted
	// RecordsSynced says the initial state has been delivered.
	RecordsSynced
	// RecordsReset says the whole state follows again (see Broker).
	RecordsReset
)

// RecordUpdate is one thing a records watcher hears.
type RecordUpdate struct {
	Kind   RecordKind
	Record Record
	Live   bool // a change made while watching, not the initial state
}

// Signal is a message for every node that is not kept: a kick, a direct
// message. Kind says what it is; Body is the hub's own encoding.
type Signal struct {
	Kind string          `json:"kind"`
	Body json.RawMessage `json:"body"`
}

// validRecordKey reports whether k can name a record: tokens of
// [A-Za-z0-9_-] joined by '.', at most 255 bytes in all.
func validRecordKey(k string) bool {
	if len(k) == 0 || len(k) > 255 {
		return false
	}
	for tok := range strings.SplitSeq(k, ".") {
		if !validIdent(tok, 255) {
			return false
		}
	}
	return true
}

// defaultSignalWait is how long a signal's sender waits for nodes that
// have not answered.
const defaultSignalWait = time.Second

// Envelope is one chat message on its way through the broker. The broker
// fills in Seq; the hub fills in the rest.
type Envelope struct {
	Room string `json:"-"` // carried by the subject, not the body
	Seq  uint64 `json:"-"` // assigned by the broker's log
	ID   uint64 `json:"-"` // the publishing process's message id; unsequenced brokers only
	// MsgID identifies the message for dedupe: its sender and the id the
	// sender gave it (msgKey in ack.go). Empty: the sender gave none. A
	// sequenced broker carries it outside the body (Nats-Msg-Id).
	MsgID string `json:"-"`
	From  string `json:"from"`
	// Sender is the login behind From when they differ (a login gets a
	// variant, carol-2, only in a room where a guest already held its
	// name, from before it was registered), so that every node's slow
	// mode counts the user.
	Sender  string    `json:"sender,omitempty"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
	Bot     bool      `json:"bot,omitempty"`    // posted through the HTTP API
	Action  bool      `json:"action,omitempty"` // an action (/me): "* from message"
}

// Published is the outcome of one Publish, handed to its done callback.
type Published struct {
	Seq       uint64 // the message's seq in the room's log; 0 for an unsequenced broker
	Epoch     string // the log's epoch; "" for an unsequenced broker
	Duplicate bool   // the log already had this MsgID: Seq is the earlier message's
	Err       error  // the message was not delivered
}

// DeliveryKind says what a Delivery carries.
type DeliveryKind uint8

const (
	// DeliverMessage carries one message of the room's log.
	DeliverMessage DeliveryKind = iota + 1
	// DeliverSynced says the replay is over: Epoch and Last (the last
	// sequence in the log when the subscription started) are set.
	DeliverSynced
)

// Delivery is one thing a subscription hands to its callback.
type Delivery struct {
	Kind  DeliveryKind
	Msg   Envelope // DeliverMessage
	Epoch string   // identifies this incarnation of the room's log; "" if not sequenced
	Last  uint64   // DeliverSynced
}

// PresenceUpdate says who node now has in room: Count members, of whom
// Names (sorted) are listed. Count is 0 when the node has nobody there any
// more, or has left or died.
type PresenceUpdate struct {
	Node  string   `json:"node,omitempty"`
	Room  string   `json:"room,omitempty"`
	Names []string `json:"names,omitempty"`
	Count int      `json:"count,omitempty"`
	// Gone marks names that have just left because of a kick or a ban,
	// so that every node shows the leave as one (moderation.go). Carried
	// by the change that removes them, not by heartbeats.
	Gone map[string]LeaveMark `json:"gone,omitempty"`
}

// LeaveMark is why a name left a room: kicked, or banned, by whom, why.
type LeaveMark struct {
	By     string `json:"by"`
	Reason string `json:"reason,omitempty"`
	Banned bool   `json:"banned,omitempty"`
}

// Broker errors the hub turns into messages for the sender.
var (
	errBrokerClosed = errors.New("broker closed")
	errBrokerBusy   = errors.New("broker queue full")
	errBrokerDown   = errors.New("cluster link down")
	// errRecordChanged is DeleteRecord's answer when the key no longer has
	// the revision it was asked to delete.
	errRecordChanged = errors.New("record changed meanwhile")
	errBadRecordKey  = errors.New("bad record key")
	// errRecordsLoading is Ready's answer while the link is up but the
	// moderation records have not all arrived: the node must not admit
	// anyone yet (a ban may be among them), but rooms can follow their
	// streams.
	errRecordsLoading = errors.New("moderation state not loaded from JetStream yet")
)

// subjectToken encodes s as one NATS subject token (and stream-name part)
// that cannot inject a token separator, a wildcard or whitespace, whatever
// s holds. Letters, digits and '-' stand for themselves; every other byte,
// '_' included, becomes '_' and two hex digits, so the encoding is
// one-to-one and room names ([A-Za-z0-9_-]) stay readable.
func subjectToken(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty name cannot be a subject token")
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String(), nil
}

// validPrefix reports whether p may name a cluster's subjects and streams:
// 1 to 32 characters from [A-Za-z0-9_-], so it is a single token.
func validPrefix(p string) bool {
	return validIdent(p, 32)
}
