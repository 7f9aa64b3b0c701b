package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// startDurable serves a server with history in dir; stop shuts it down
// cleanly (and is also run at the end of the test, harmlessly, if the test
// did not).
func startDurable(t *testing.T, cfg Config) (s *testServer, stop func()) {
	t.Helper()
	srv, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ts := httptest.NewServer(srv.routes())
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		ts.Close()
	}
	t.Cleanup(stop)
	return &testServer{Server: srv, ts: ts}, stop
}

func TestDurableHistorySurvivesRestart(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), History: 4, HistoryOnJoin: 3}
	s1, stop := startDurable(t, cfg)
	a, _ := s1.joined(t, "room", "keep", "name", "alice")
	last := a.post("m", 6) // seqs 1..6; 3..6 kept
	s1.joined(t, "room", "quiet", "name", "q")
	stop()

	s2, _ := startDurable(t, cfg)
	b := s2.dial(t, "room", "keep", "name", "bob")
	b.expect("room_changed")
	hp := b.history()
	if hp.Epoch != last.Epoch || fmt.Sprint(seqs(hp.Messages)) != "[4 5 6]" || hp.Messages[2].Message != "m5" {
		t.Errorf("after restart history = epoch %q %+v; want %q with seqs 4..6", hp.Epoch, hp.Messages, last.Epoch)
	}
	// A client that was there before the restart resumes across it.
	_, hp, rec := s2.resume(t, "keep", "alice", 3, last.Epoch)
	if !rec.Recovered || fmt.Sprint(seqs(hp.Messages)) != "[4 5 6]" {
		t.Errorf("resume across restart: %+v %v; want recovered 4..6", rec, seqs(hp.Messages))
	}
	// Numbering carries on.
	b.say("after")
	if m := b.skipUntil("new_message").msg(t); m.Seq != 7 || m.Epoch != last.Epoch {
		t.Errorf("first message after restart seq %d epoch %q; want 7 %q", m.Seq, m.Epoch, last.Epoch)
	}
	// A room that never had a message kept its epoch too.
	q := s2.dial(t, "room", "quiet", "name", "q")
	q.expect("room_changed")
	if hp := q.history(); hp.Epoch == "" || len(hp.Messages) != 0 {
		t.Errorf("quiet room history %+v; want empty with an epoch", hp)
	}
}

// TestDurableUncleanRotatesEpoch: after a crash, seqs clients saw may not
// have reached the disk, so every room starts a new epoch, keeping the
// messages that did.
func TestDurableUncleanRotatesEpoch(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	st, err := openBoltStore(dir, 5, log)
	if err != nil {
		t.Fatal(err)
	}
	book := newHistoryBook(Config{History: 5, DataDir: dir}.withDefaults(), st, log)
	book.record("r", 1, "al", "one", testTime, false)
	o := book.record("r", 2, "al", "two", testTime, false)
	book.record("s", 1, "al", "other room", testTime, false)
	old, oldS := book.get("r").epoch, book.get("s").epoch
	// Crash: the writer commits what it has, but nobody marks the file clean.
	close(st.quit)
	<-st.done
	st.db.Close()

	st2, err := openBoltStore(dir, 5, log)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.close()
	book2 := newHistoryBook(Config{History: 5, DataDir: dir}.withDefaults(), st2, log)
	l := book2.get("r")
	if l.epoch == old || l.epoch == "" || l.last != 2 || l.count() != 2 {
		t.Fatalf("after a crash: epoch %q (was %q) last %d kept %d; want a new epoch, 2 kept", l.epoch, old, l.last, l.count())
	}
	if s := book2.get("s"); s.epoch == oldS || s.last != 1 {
		t.Errorf("second room after a crash: epoch %q (was %q) last %d; want a new epoch, last 1", s.epoch, oldS, s.last)
	}
	if got := string(l.at(1).o.json); !strings.Contains(got, `"epoch":"`+l.epoch+`"`) || !strings.Contains(got, `"seq":2`) {
		t.Errorf("reloaded message %s; want seq 2 under the new epoch (was %s)", got, o.json)
	}
}

// TestBoltStoreQueuedAndTrimmed drives the store without its writer, so
// that load can be checked both before and after a flush.
func TestBoltStoreQueuedAndTrimmed(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "h.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := claim(db); err != nil {
		t.Fatal(err)
	}
	s := &boltStore{db: db, keep: 3, log: slog.New(slog.DiscardHandler), wake: make(chan struct{}, 1)}
	msg := func(seq uint64) []byte {
		return messagePayloadJSON(encodeMessage(messagePayload{Seq: seq, Message: fmt.Sprint("m", seq)}))
	}
	check := func(when, wantEpoch, wantSeqs string) {
		t.Helper()
		epoch, msgs, err := s.load("r", 3)
		var got []string
		for _, m := range msgs {
			got = append(got, fmt.Sprintf("%d:%s", m.seq, m.Message))
		}
		if err != nil || epoch != wantEpoch || strings.Join(got, " ") != wantSeqs {
			t.Errorf("%s: load = %q %v %v; want %q %s", when, epoch, got, err, wantEpoch, wantSeqs)
		}
	}
	check("unknown room", "", "")
	s.resetRoom("r", "E1")
	for seq := uint64(1); seq <= 5; seq++ {
		s.appendMessage("r", seq, msg(seq), "")
	}
	check("queued only", "E1", "3:m3 4:m4 5:m5")
	s.flush()
	check("committed", "E1", "3:m3 4:m4 5:m5")
	s.appendMessage("r", 6, msg(6), "")
	check("committed plus queued", "E1", "4:m4 5:m5 6:m6")
	s.flush()
	var kept int
	db.View(func(tx *bolt.Tx) error {
		kept = tx.Bucket(bucketRooms).Bucket([]byte("r")).Bucket(bucketMsgs).Stats().KeyN
		return nil
	})
	if kept != 3 {
		t.Errorf("disk keeps %d messages; want 3", kept)
	}
	s.resetRoom("r", "E2")
	check("reset queued", "E2", "")
	s.flush()
	check("reset committed", "E2", "")
}

func TestDataDirErrors(t *testing.T) {
	dir := t.TempDir()
	_, stop := startDurable(t, deployed(Config{DataDir: dir}))
	defer stop()
	// A second server on the same directory is refused, not left hanging.
	if _, err := Open(Config{DataDir: dir, History: 100}, testLogger(t)); err == nil || !strings.Contains(err.Error(), "open history") {
		t.Errorf("second Open on %s: %v; want an open history error", dir, err)
	}
	if _, err := Open(Config{DataDir: dir, History: 0}, testLogger(t)); err == nil {
		t.Errorf("Open with a data dir and history off succeeded")
	}
	if _, err := Open(Config{DataDir: "/proc/hubbub-no", History: 100}, testLogger(t)); err == nil {
		t.Errorf("Open in an unwritable dir succeeded")
	}
}

// holdCommits makes the store's commits wait until release is closed.
func (s *boltStore) holdCommits(release chan struct{}) {
	s.mu.Lock()
	s.hold = release
	s.mu.Unlock()
}
