package wsconn

// queue holds the messages waiting for a connection's writer. It is not
// safe on its own: Conn.mu guards it.
//
// Why a slice rather than a buffered channel, as in the gorilla chat
// example: a channel allocates all of its slots up front, which would be
// the largest single item of an idle connection's memory. This queue grows
// only as far as a backlog actually reaches, and holds nothing at all once
// the writer that drained it has gone. It also lets the writer take the
// whole backlog in one step, under one lock, instead of one receive per
// message.
type queue struct {
	items [][]byte
	// spare is the array the writer handed back with its last batch; the
	// next take installs it, so two arrays alternate under load instead
	// of a new one per batch.
	spare [][]byte
}

// push appends msg unless limit messages already wait. It reports how many
// wait, msg included, or 0 if msg was refused.
func (q *queue) push(msg []byte, limit int) int {
	if len(q.items) >= limit {
		return 0
	}
	q.items = append(q.items, msg)
	return len(q.items)
}

// take hands over everything queued. The caller gives the batch back with
// recycle once it is written.
func (q *queue) take() [][]byte {
	batch := q.items
	q.items, q.spare = q.spare[:0], nil
	return batch
}

// recycle keeps a written batch's array as the next spare, cleared so that
// it pins no messages. A large one is dropped instead: keeping it would
// make one burst's worth of memory permanent for a client that then goes
// quiet.
func (q *queue) recycle(batch [][]byte) {
	if cap(batch) == 0 || cap(batch) > keepBatchCap {
		return
	}
	clear(batch)
	q.spare = batch[:0]
}

// release drops both arrays: the writer is leaving, and an idle connection
// should hold no queue memory.
func (q *queue) release() {
	if len(q.items) == 0 {
		q.items = nil
	}
	q.spare = nil
}

// keepBatchCap is the largest array recycle keeps: enough for the batches
// of a busy client's steady state, small next to a full queue.
const keepBatchCap = 32
