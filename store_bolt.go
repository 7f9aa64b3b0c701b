package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Durable room history in one bbolt file, DATA_DIR/history.db.
//
// Layout: bucket "rooms" holds one bucket per room with key "epoch", a
// bucket "msgs" mapping the big-endian seq to the new_message payload JSON,
// and a bucket "keys" mapping the seq of a message sent with an id to its
// dedupe key (ack.go); only the newest Config.History messages are kept.
// Bucket "meta" holds "clean" while no process has the file open for
// writing. Bucket "moderation" holds the bans, mutes and slow modes in
// force (moderation.go), key to record; a deleted message is kept as its
// tombstone in place of the message (its old page becomes free space,
// which bbolt reuses but does not scrub).
//
// The hub never waits for the disk. It queues writes (appendMessage,
// resetRoom) and a writer goroutine commits whatever has queued in one
// transaction: one fsync per batch, however many messages it holds, so
// writes group themselves under load. After each commit the writer tells
// the hub which seqs are on disk (SetOnCommit), and only then does the hub
// broadcast and ack them: a message anyone has seen is a message on disk.
// To keep seqs from being reused under the same epoch after a crash, open
// notices that "clean" is missing and gives every room a new epoch: clients
// then get recovered:false, never a wrong answer.

// maxPendingWrites bounds the write queue. A disk this far behind drops
// writes (and the file is then treated as not clean) rather than letting
// memory grow without limit.
const maxPendingWrites = 1 << 16

var (
	bucketRooms = []byte("rooms")
	bucketMeta  = []byte("meta")
	bucketMsgs  = []byte("msgs")
	bucketKeys  = []byte("keys")
	bucketMod   = []byte("moderation")
	keyEpoch    = []byte("epoch")
	keyClean    = []byte("clean")
)

// storeOp is one queued write: a message, a room's history starting
// afresh under a new epoch, a message replaced by its tombstone, or a
// moderation record put or deleted.
type storeOp struct {
	kind    opKind
	room    string
	epoch   string // reset only
	seq     uint64
	payload []byte // new_message payload JSON, shared with the broadcast; a record's value
	key     string // dedupe key (msgKey.msgID), "" if the sender gave none; a record's key
}

// opKind says what a storeOp writes.
type opKind uint8

const (
	opMessage opKind = iota
	opReset
	opRewrite // replace message seq, if still kept, with payload
	opModPut
	opModDelete
)

// storedMsg is a message read back from the store.
type storedMsg struct {
	seq uint64
	key string // its dedupe key, "" if none
	messagePayload
}

// errStoreBehind is the error for a message the store could not even queue.
var errStoreBehind = errors.New("history store is falling behind")

// boltStore is the durable history. load, appendMessage and resetRoom are
// called by Hub.run; the writer goroutine commits; close is called once run
// has returned.
type boltStore struct {
	db   *bolt.DB
	keep int // messages kept per room
	log  *slog.Logger

	mu       sync.Mutex // guards the following fields
	pending  []storeOp  // queued, not yet taken by the writer
	inflight []storeOp  // taken by the writer, not yet committed
	dirty    bool       // a write was dropped or failed: do not mark clean
	onCommit func(upto map[string]uint64, ok bool)
	// hold, when a test sets it, makes each commit wait until it is
	// closed. Nil outside tests.
	hold chan struct{}

	wake      chan struct{} // buffered (1): pending is non-empty
	quit      chan struct{} // closed by close
	done      chan struct{} // closed when the writer exits
	closeOnce sync.Once
	closeErr  error
}

// openBoltStore opens (creating if needed) the history in dir, keeping
// keep messages per room, and starts its writer.
func openBoltStore(dir string, keep int, log *slog.Logger) (*boltStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("history dir: %w", err)
	}
	path := filepath.Join(dir, "history.db")
	// The timeout turns a second process on the same directory into a
	// prompt error instead of a silent hang on the file lock.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	rotated, err := claim(db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open history %s: %w", path, err)
	}
	if rotated > 0 {
		log.Warn("history was not closed cleanly; rooms start new epochs", "path", path, "rooms", rotated)
	}
	s := &boltStore{
		db: db, keep: keep, log: log,
		wake: make(chan struct{}, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.writer()
	return s, nil
}

// claim marks db as in use. If the previous user did not close it cleanly,
// every room gets a new epoch; claim returns how many.
func claim(db *bolt.DB) (rotated int, err error) {
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		rooms, err := tx.CreateBucketIfNotExists(bucketRooms)
		if err != nil {
			return err
		}
		clean := meta.Get(keyClean) != nil
		if err := meta.Delete(keyClean); err != nil {
			return err
		}
		if clean {
			return nil
		}
		// Collect first: changing buckets while iterating their parent is
		// not something bbolt promises to handle.
		var names [][]byte
		rooms.ForEachBucket(func(name []byte) error {
			names = append(names, append([]byte(nil), name...))
			return nil
		})
		for _, name := range names {
			if err := rooms.Bucket(name).Put(keyEpoch, []byte(newEpoch())); err != nil {
				return err
			}
		}
		rotated = len(names)
		return nil
	})
	return rotated, err
}

// SetOnCommit sets the function the writer calls after each transaction
// with, for each room written, the newest seq the transaction held, and
// whether it committed. It runs on the writer goroutine and must not block
// for long.
func (s *boltStore) SetOnCommit(f func(upto map[string]uint64, ok bool)) {
	s.mu.Lock()
	s.onCommit = f
	s.mu.Unlock()
}

// appendMessage queues message seq of room, with its dedupe key (or "").
// It reports false if the queue is full and the message was dropped.
// Called by Hub.run; never blocks.
func (s *boltStore) appendMessage(room string, seq uint64, payload []byte, key string) bool {
	return s.enqueue(storeOp{kind: opMessage, room: room, seq: seq, payload: payload, key: key})
}

// resetRoom queues the start of a new history for room under epoch,
// discarding any messages it had. Called by Hub.run; never blocks.
func (s *boltStore) resetRoom(room, epoch string) {
	s.enqueue(storeOp{kind: opReset, room: room, epoch: epoch})
}

// rewriteMessage queues replacing message seq of room, if the file still
// keeps it, with payload: a deleted message's tombstone. Called by
// Hub.run; never blocks.
func (s *boltStore) rewriteMessage(room string, seq uint64, payload []byte) {
	s.enqueue(storeOp{kind: opRewrite, room: room, seq: seq, payload: payload})
}

// putModeration queues keeping the moderation record key. Called by
// Hub.run; never blocks.
func (s *boltStore) putModeration(key string, value []byte) {
	s.enqueue(storeOp{kind: opModPut, key: key, payload: value})
}

// deleteModeration queues forgetting the moderation record key. Called by
// Hub.run; never blocks.
func (s *boltStore) deleteModeration(key string) {
	s.enqueue(storeOp{kind: opModDelete, key: key})
}

// loadModeration reads every moderation record, committed or queued.
// Called by newHub before the hub runs.
func (s *boltStore) loadModeration() (map[string][]byte, error) {
	recs := make(map[string][]byte)
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMod)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			recs[string(k)] = append([]byte(nil), v...)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("load moderation: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, list := range [][]storeOp{s.inflight, s.pending} {
		for _, op := range list {
			switch op.kind {
			case opModPut:
				recs[op.key] = op.payload
			case opModDelete:
				delete(recs, op.key)
			}
		}
	}
	return recs, nil
}

// hasRoom reports whether the file knows room. Called by Hub.run.
func (s *boltStore) hasRoom(room string) bool {
	s.mu.Lock()
	for _, list := range [][]storeOp{s.inflight, s.pending} {
		for _, op := range list {
			if op.room == room && (op.kind == opReset || op.kind == opMessage) {
				s.mu.Unlock()
				return true
			}
		}
	}
	s.mu.Unlock()
	found := false
	s.db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket(bucketRooms).Bucket([]byte(room)) != nil
		return nil
	})
	return found
}

// enqueue adds op to the pending writes and wakes the writer. It reports
// false if the queue is full and op was dropped.
func (s *boltStore) enqueue(op storeOp) bool {
	s.mu.Lock()
	if len(s.pending) >= maxPendingWrites {
		first := !s.dirty
		s.dirty = true
		s.mu.Unlock()
		if first {
			s.log.Error("history store is falling behind; dropping writes", "queued", maxPendingWrites)
		}
		return false
	}
	s.pending = append(s.pending, op)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return true
}

// writer commits queued writes until close, then commits the rest.
func (s *boltStore) writer() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
			s.flush()
		case <-s.quit:
			s.flush()
			return
		}
	}
}

// flush commits everything pending in one transaction. Called only by the
// writer goroutine.
func (s *boltStore) flush() {
	s.mu.Lock()
	hold := s.hold
	s.mu.Unlock()
	if hold != nil {
		<-hold
	}
	s.mu.Lock()
	s.pending, s.inflight = s.inflight[:0], s.pending
	batch := s.inflight
	s.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rooms := tx.Bucket(bucketRooms)
		for _, op := range batch {
			if op.kind == opModPut || op.kind == opModDelete {
				if err := applyModeration(tx, op); err != nil {
					return fmt.Errorf("moderation %q: %w", op.key, err)
				}
				continue
			}
			if err := s.apply(rooms, op); err != nil {
				return fmt.Errorf("room %q seq %d: %w", op.room, op.seq, err)
			}
		}
		return nil
	})
	upto := make(map[string]uint64)
	for _, op := range batch {
		if op.kind == opMessage && op.seq > upto[op.room] {
			upto[op.room] = op.seq
		}
	}
	s.mu.Lock()
	clear(s.inflight) // let the payloads go
	s.inflight = s.inflight[:0]
	if err != nil {
		s.dirty = true
	}
	onCommit := s.onCommit
	s.mu.Unlock()
	if err != nil {
		s.log.Error("history write failed", "writes", len(batch), "err", err)
	}
	if onCommit != nil && len(upto) > 0 {
		onCommit(upto, err == nil)
	}
}

// applyModeration performs one moderation write inside a transaction.
func applyModeration(tx *bolt.Tx, op storeOp) error {
	b, err := tx.CreateBucketIfNotExists(bucketMod)
	if err != nil {
		return err
	}
	if op.kind == opModDelete {
		return b.Delete([]byte(op.key))
	}
	return b.Put([]byte(op.key), op.payload)
}

// apply performs one write of a room inside a transaction.
func (s *boltStore) apply(rooms *bolt.Bucket, op storeOp) error {
	if op.kind == opRewrite {
		// Only a message still kept: a tombstone never brings one back.
		rb := rooms.Bucket([]byte(op.room))
		if rb == nil {
			return nil
		}
		if msgs := rb.Bucket(bucketMsgs); msgs != nil && msgs.Get(seqKey(op.seq)) != nil {
			return msgs.Put(seqKey(op.seq), op.payload)
		}
		return nil
	}
	rb, err := rooms.CreateBucketIfNotExists([]byte(op.room))
	if err != nil {
		return err
	}
	if op.kind == opReset {
		for _, name := range [][]byte{bucketMsgs, bucketKeys} {
			if rb.Bucket(name) != nil {
				if err := rb.DeleteBucket(name); err != nil {
					return err
				}
			}
		}
		return rb.Put(keyEpoch, []byte(op.epoch))
	}
	msgs, err := rb.CreateBucketIfNotExists(bucketMsgs)
	if err != nil {
		return err
	}
	if err := msgs.Put(seqKey(op.seq), op.payload); err != nil {
		return err
	}
	keys := rb.Bucket(bucketKeys)
	if op.key != "" {
		if keys, err = rb.CreateBucketIfNotExists(bucketKeys); err != nil {
			return err
		}
		if err := keys.Put(seqKey(op.seq), []byte(op.key)); err != nil {
			return err
		}
	}
	// Trim to the newest keep messages; usually exactly one goes.
	if op.seq <= uint64(s.keep) {
		return nil
	}
	oldest := op.seq - uint64(s.keep)
	for _, b := range []*bolt.Bucket{msgs, keys} {
		if b == nil {
			continue
		}
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= oldest; k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
	}
	return nil
}

// seqKey encodes seq so that byte order is numeric order.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// load reads room's epoch ("" if the store has never seen the room) and its
// newest max messages, oldest first, including writes not yet committed.
// Called by Hub.run.
func (s *boltStore) load(room string, max int) (epoch string, msgs []storedMsg, err error) {
	// Snapshot queued writes before reading the file: a batch committed in
	// between is then seen twice (and deduplicated by seq), never missed.
	s.mu.Lock()
	var queued []storeOp
	for _, list := range [][]storeOp{s.inflight, s.pending} {
		for _, op := range list {
			if op.room == room && op.kind != opModPut && op.kind != opModDelete {
				queued = append(queued, op)
			}
		}
	}
	s.mu.Unlock()

	err = s.db.View(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRooms).Bucket([]byte(room))
		if rb == nil {
			return nil
		}
		epoch = string(rb.Get(keyEpoch))
		mb := rb.Bucket(bucketMsgs)
		if mb == nil {
			return nil
		}
		kb := rb.Bucket(bucketKeys)
		c := mb.Cursor()
		for k, v := c.Last(); k != nil && len(msgs) < max; k, v = c.Prev() {
			m := storedMsg{seq: binary.BigEndian.Uint64(k)}
			if err := json.Unmarshal(v, &m.messagePayload); err != nil {
				return fmt.Errorf("message %d: %w", m.seq, err)
			}
			if kb != nil {
				m.key = string(kb.Get(k))
			}
			msgs = append(msgs, m)
		}
		return nil
	})
	if err != nil {
		return "", nil, fmt.Errorf("load history of %q: %w", room, err)
	}
	for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
		msgs[i], msgs[j] = msgs[j], msgs[i]
	}
	for _, op := range queued {
		if op.kind == opReset {
			epoch, msgs = op.epoch, msgs[:0]
			continue
		}
		if op.kind == opRewrite {
			for i := range msgs {
				if msgs[i].seq == op.seq {
					m := storedMsg{seq: op.seq, key: msgs[i].key}
					if err := json.Unmarshal(op.payload, &m.messagePayload); err == nil {
						msgs[i] = m
					}
				}
			}
			continue
		}
		if n := len(msgs); n > 0 && op.seq <= msgs[n-1].seq {
			continue // committed meanwhile, already read
		}
		m := storedMsg{seq: op.seq, key: op.key}
		if err := json.Unmarshal(op.payload, &m.messagePayload); err != nil {
			return "", nil, fmt.Errorf("load history of %q: queued message %d: %w", room, op.seq, err)
		}
		msgs = append(msgs, m)
	}
	if len(msgs) > max {
		msgs = msgs[len(msgs)-max:]
	}
	return epoch, msgs, nil
}

// close commits queued writes, marks the file clean (unless a write was
// lost) and closes it. Safe to call more than once.
func (s *boltStore) close() error {
	s.closeOnce.Do(func() {
		close(s.quit)
		<-s.done
		s.mu.Lock()
		dirty := s.dirty
		s.mu.Unlock()
		var err error
		if !dirty {
			err = s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keyClean, []byte{1})
			})
		}
		if cerr := s.db.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			s.closeErr = fmt.Errorf("close history: %w", err)
		}
	})
	return s.closeErr
}
