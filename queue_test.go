package main

import (
	"sync"
	"testing"
)

// each calls f for every event pushed to q, in order, until q is closed and
// empty, taking batches the way writePump does. For socketless clients in
// tests and benchmarks.
func (q *sendQueue) each(f func(*outbound)) {
	var spare []*outbound
	for {
		batch, closed := q.take(spare)
		for _, o := range batch {
			f(o)
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			<-q.ready
		}
		spare = recycle(batch)
	}
}

// discard empties q and keeps its array for the next pushes, the state a
// queue is in after writePump has taken and recycled a batch. For
// socketless clients in tests and benchmarks.
func (q *sendQueue) discard() {
	q.mu.Lock()
	clear(q.items)
	q.items = q.items[:0]
	q.holding = false
	q.mu.Unlock()
}

func testEvents(n int) []*outbound {
	evs := make([]*outbound, n)
	for i := range evs {
		evs[i] = &outbound{text: []byte{byte(i)}}
	}
	return evs
}

// TestSendQueueLimitAndClose: events come out in order, a push beyond the
// limit fails and reports the depth, and after close the rest is still
// handed over, marked closed, while new pushes fail.
func TestSendQueueLimitAndClose(t *testing.T) {
	q := newSendQueue(4)
	evs := testEvents(5)
	for i, o := range evs[:4] {
		if ok, depth := q.push(o); !ok || depth != i+1 {
			t.Fatalf("push %d = %v, depth %d; want true, %d", i, ok, depth, i+1)
		}
	}
	if ok, depth := q.push(evs[4]); ok || depth != 4 {
		t.Fatalf("push over the limit = %v, depth %d; want false, 4", ok, depth)
	}
	batch, closed := q.take(nil)
	if closed || len(batch) != 4 {
		t.Fatalf("take = %d events, closed %v; want 4, false", len(batch), closed)
	}
	for i, o := range batch {
		if o != evs[i] {
			t.Errorf("event %d out of order", i)
		}
	}
	q.push(evs[0])
	q.close()
	q.close() // harmless
	if ok, _ := q.push(evs[1]); ok {
		t.Error("push after close succeeded")
	}
	batch, closed = q.take(nil)
	if !closed || len(batch) != 1 || batch[0] != evs[0] {
		t.Fatalf("take after close = %d events, closed %v; want the 1 queued, true", len(batch), closed)
	}
	if batch, closed = q.take(nil); !closed || len(batch) != 0 {
		t.Fatalf("second take after close = %d events, closed %v; want 0, true", len(batch), closed)
	}
}

// TestSendQueueWakeups pins down when the writer is woken: the first push
// to an idle writer does; pushes while it holds a batch do not, until the
// queue is half full (which must cut a batch window short); close does.
func TestSendQueueWakeups(t *testing.T) {
	woken := func(q *sendQueue) bool {
		select {
		case <-q.ready:
			return true
		default:
			return false
		}
	}
	q := newSendQueue(8)
	evs := testEvents(8)
	q.push(evs[0])
	if !woken(&q) {
		t.Fatal("first push to an idle writer did not wake it")
	}
	q.take(nil) // the writer holds a batch now
	for i := 1; i <= 3; i++ {
		q.push(evs[i])
		if woken(&q) {
			t.Fatalf("push %d while the writer holds a batch woke it (depth %d of 8)", i, i)
		}
	}
	q.push(evs[4]) // depth 4: half full
	if !woken(&q) {
		t.Fatal("reaching half full did not wake the writer")
	}
	q.take(nil)
	if batch, _ := q.take(nil); len(batch) != 0 {
		t.Fatalf("queue not empty: %d", len(batch))
	}
	// Idle again: the next push wakes.
	q.push(evs[5])
	if !woken(&q) {
		t.Fatal("first push after the writer went idle did not wake it")
	}
	q.close()
	if !woken(&q) {
		t.Fatal("close did not wake the writer")
	}
}

// TestSendQueueNoLostWakeup runs a producer against a consumer that sleeps
// only on ready, as writePump does. A lost wake-up would leave the consumer
// asleep with events queued and the test would hang (and fail on timeout);
// every event must arrive once, in order.
func TestSendQueueNoLostWakeup(t *testing.T) {
	const n = 200000
	q := newSendQueue(n)
	evs := testEvents(256)
	var wg sync.WaitGroup
	wg.Add(1)
	got := 0
	var bad int
	go func() {
		defer wg.Done()
		q.each(func(o *outbound) {
			if o != evs[got%len(evs)] {
				bad++
			}
			got++
		})
	}()
	for i := range n {
		if ok, _ := q.push(evs[i%len(evs)]); !ok {
			t.Fatalf("push %d failed", i)
		}
	}
	q.close()
	wg.Wait()
	if got != n || bad != 0 {
		t.Fatalf("consumer got %d events (%d out of order); want %d in order", got, bad, n)
	}
}

// TestSendQueueGivesMemoryBack: after a burst has been taken and written,
// neither the queue nor the writer's spare keeps the burst's array, and a
// recycled batch pins no events.
func TestSendQueueGivesMemoryBack(t *testing.T) {
	q := newSendQueue(256)
	var spare []*outbound
	for _, o := range testEvents(200) {
		q.push(o)
	}
	batch, _ := q.take(spare)
	if len(batch) != 200 {
		t.Fatalf("took %d; want 200", len(batch))
	}
	if spare = recycle(batch); cap(spare) > keepBatchCap {
		t.Errorf("writer keeps a %d-slot array after a burst; want at most %d", cap(spare), keepBatchCap)
	}
	if cap(q.items) > keepBatchCap {
		t.Errorf("queue keeps a %d-slot array after a burst; want at most %d", cap(q.items), keepBatchCap)
	}
	small := testEvents(3)
	for _, o := range small {
		q.push(o)
	}
	batch, _ = q.take(spare)
	kept := recycle(batch)
	for i, o := range kept[:cap(kept)] {
		if o != nil {
			t.Errorf("recycled batch still points at event %d", i)
		}
	}
}
