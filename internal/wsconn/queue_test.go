package wsconn

import "testing"

func TestQueue(t *testing.T) {
	var q queue
	for i := range 3 {
		if n := q.push([]byte{byte(i)}, 3); n != i+1 {
			t.Fatalf("push %d: depth %d; want %d", i, n, i+1)
		}
	}
	if n := q.push([]byte{9}, 3); n != 0 {
		t.Fatalf("push over the limit: depth %d; want 0 (refused)", n)
	}
	batch := q.take()
	if len(batch) != 3 || batch[0][0] != 0 || batch[2][0] != 2 {
		t.Fatalf("take = %v; want the three pushed, in order", batch)
	}
	if len(q.items) != 0 {
		t.Fatalf("queue holds %d after take", len(q.items))
	}
	// The written batch's array comes back as the one after next: the
	// queue fills its current array meanwhile.
	arr := &batch[:1][0]
	q.recycle(batch)
	if batch[0] != nil {
		t.Error("recycle left a message pinned in the array")
	}
	q.push([]byte{5}, 3)
	q.recycle(q.take())
	q.push([]byte{6}, 3)
	if &q.items[:1][0] != arr {
		t.Error("the recycled array was not reused")
	}
	// A big batch is not kept, and release leaves nothing behind.
	q.take()
	q.recycle(make([][]byte, 0, keepBatchCap+1))
	if q.spare != nil {
		t.Errorf("kept a spare of capacity %d; want none over %d", cap(q.spare), keepBatchCap)
	}
	q.take()
	q.release()
	if q.items != nil || q.spare != nil {
		t.Errorf("after release: items cap %d, spare cap %d; want no arrays", cap(q.items), cap(q.spare))
	}
}
