package main

import (
	"runtime/debug"
	"time"

	"github.com/gorilla/websocket"
)

// Panics in connection goroutines.
//
// A bug reachable from one connection (a decoder edge case, a nil in a rare
// path) must cost that connection, not the process and every other client.
// So each pump defers recoverPanic: the panic is logged once with the
// client and the stack, counted, and the pump then leaves through its
// ordinary exit path (readPump tells writePump and unregisters, writePump
// closes the socket and reports finished), which keeps the hub's
// bookkeeping exact.
//
// The hub goroutine is deliberately not covered. It owns every map; a panic
// there can strike between two updates that belong together (a client
// deleted from its room but not from the client set, send closed but the
// client still listed) and nothing could tell which invariants still hold.
// Carrying on would trade a crash for silent corruption — lost messages,
// double closes, leaked goroutines — so a hub panic stays fatal and the
// process supervisor restarts a clean server.

// panicHook, when a test sets it, is called once per frame by readPump (in
// handleFrame) and once per batch by writePump (in writeBatch), so the test
// can make either pump panic. Always nil outside tests; set it only while
// no server is running.
var panicHook func(pump string, c *Client)

// recoverPanic stops a panic in the pump named pump, logs it and counts it.
// It must be deferred directly by the pump, after the pump's exit-path
// defer, so that it runs first and the exit path then runs normally.
//
// After a readPump panic the peer is told 1011 (internal error). After a
// writePump panic nothing more is written: the panic may have struck in
// the middle of a frame, so the socket is simply closed.
func (c *Client) recoverPanic(pump string) {
	v := recover()
	if v == nil {
		return
	}
	var stack []byte
	if hp, ok := v.(*helperPanic); ok {
		// It struck on the pump's helper goroutine (freshstack.go); its
		// stack says where.
		v, stack = hp.value, hp.stack
	} else {
		stack = debug.Stack()
	}
	c.hub.stats.panics.Add(1)
	c.logger().Error("recovered panic; closing connection", "pump", pump, "name", c.wantName,
		"panic", v, "stack", string(stack))
	if pump == "readPump" {
		c.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseInternalServerErr, "internal error"),
			time.Now().Add(c.hub.cfg.WriteWait))
	}
}
