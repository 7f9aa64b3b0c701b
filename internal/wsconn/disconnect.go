package wsconn

import (
	"errors"
	"fmt"
)

// Disconnect is why a connection ends, in the three forms each audience
// needs: the close code and reason text the peer is sent, and the label a
// metric counts it under. One value carries all three, so that a close can
// never be sent under one name and counted under another.
//
// The connection itself decides on some ends (a message over the read
// limit, a missed pong, a stuck write, a broken frame, a bug); it takes
// their Disconnect values from Config, which holds the server's
// vocabulary. Every other end is the server's decision, passed to Close.
type Disconnect struct {
	// Code is the close code sent to the peer. 0 sends no close frame:
	// the socket is simply closed (the peer is gone, or cannot be written
	// to).
	Code int
	// Reason is the close frame's reason text, for a person reading a
	// client's log. At most 123 bytes of it are sent.
	Reason string
	// Label names the end in metrics. "" marks an end the server did not
	// choose (the peer left), which is not counted as a disconnect.
	Label string
}

// PeerClosed is the end of a connection whose peer sent a close frame
// with code. The server answers with the same code, as RFC 6455 section
// 5.5.1 suggests, and does not count it.
func PeerClosed(code int) Disconnect {
	if code == CloseNoStatus {
		code = CloseNormal // 1005 must never be sent
	}
	return Disconnect{Code: code, Reason: "close acknowledged"}
}

// ConnLost is the end of a connection whose socket failed or was closed
// by the peer without a close frame. Nothing can be sent and nothing is
// counted.
var ConnLost = Disconnect{}

// Errors that Push returns.
var (
	// ErrQueueFull means the peer is not keeping up: QueueLimit messages
	// are already waiting. The caller decides what that costs the peer.
	ErrQueueFull = errors.New("wsconn: send queue full")
	// ErrClosed means the connection is closing or closed: nothing more
	// will be written to it.
	ErrClosed = errors.New("wsconn: connection closing")
)

// PanicError is the error reported with Config.Internal when one of a
// connection's goroutines recovered from a panic.
type PanicError struct {
	Where string // "reader" (which includes Handler.Message) or "writer"
	Value any    // what was passed to panic
	Stack []byte // where it happened
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic in the %s: %v", e.Where, e.Value) }
