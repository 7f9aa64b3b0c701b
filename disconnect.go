package main

import (
	"fmt"
	"strings"
	"time"

	"hubbub/internal/wsconn"
)

// Why the server closes a connection: every reason, with the close code
// and reason text the client is sent and the label
// hubbub_clients_dropped_total counts it under.
//
//	reason          code  close frame text                  label           decided by
//	slow consumer   1013  slow consumer: N events waiting   slow_consumer   hub: the send queue is full
//	flooding        1008  flooding: too many messages …     rate_limited    hub: flood control (flood.go)
//	shutdown        1001  server shutting down              shutdown        hub: Shutdown
//	bye             1000  bye                               (not counted)   hub: the client sent /quit
//	kicked          4000  kicked from R by M: reason        kicked          hub: a moderator's kick (moderation.go)
//	banned          4003  banned from R by M until T: …     banned          hub: a ban that covers the connection
//	too big         1009  message over N bytes              too_big         connection: the read limit
//	pong timeout    1001  no pong within D                  pong_timeout    connection: PongWait
//	write timeout   none  (the socket cannot take one)      write_timeout   connection: WriteWait
//	protocol error  1002  protocol error: what was wrong    protocol_error  connection: a bad frame
//	internal error  1011  internal error                    internal_error  connection: a recovered panic
//
// The hub applies its own with Hub.disconnect; the connection applies the
// others itself and reports them when it is over, and Hub.disconnect then
// counts them. A client that leaves on its own (close frame, lost socket)
// is not counted. Labels are part of the metrics' contract and never
// change; dropLabels lists them all.

// The hub's reasons.
var (
	dcFlooding = wsconn.Disconnect{Code: 1008, Reason: "flooding: too many messages refused", Label: "rate_limited"}
	dcShutdown = wsconn.Disconnect{Code: 1001, Reason: "server shutting down", Label: "shutdown"}
	dcBye      = wsconn.Disconnect{Code: 1000, Reason: "bye"}
)

// Close codes of the private range (RFC 6455 7.4.2) for moderation: a
// client must not reconnect on its own after them, unlike after 1001.
// 4003 mirrors HTTP 403, which a banned user's reconnect gets.
const (
	closeKicked = 4000
	closeBanned = 4003
)

// dcKicked is the reason of a connection kicked from room (everywhere when
// room is "") by who, for reason (may be empty).
func dcKicked(room, by, reason string) wsconn.Disconnect {
	text := "kicked by " + by
	if room != "" {
		text = "kicked from " + room + " by " + by
	}
	if reason != "" {
		text += ": " + reason
	}
	return wsconn.Disconnect{Code: closeKicked, Reason: closeText(text), Label: "kicked"}
}

// dcBanned is the reason of a connection closed by the ban r.
func dcBanned(r modRecord) wsconn.Disconnect {
	where := "from " + r.Room
	if r.Server {
		where = "from the server"
	}
	text := fmt.Sprintf("banned %s by %s until %s", where, r.By, r.Until.UTC().Format("2006-01-02 15:04Z"))
	if r.Reason != "" {
		text += ": " + r.Reason
	}
	return wsconn.Disconnect{Code: closeBanned, Reason: closeText(text), Label: "banned"}
}

// closeText cuts s to the 123 bytes a close frame's reason may have,
// between two characters, marking the cut.
func closeText(s string) string {
	const limit = 123
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit-len("…")], "") + "…"
}

// dcSlowConsumer is the slow-consumer reason for a queue of limit events.
func dcSlowConsumer(limit int) wsconn.Disconnect {
	return wsconn.Disconnect{Code: 1013,
		Reason: fmt.Sprintf("slow consumer: %d events waiting", limit), Label: "slow_consumer"}
}

// connConfig returns the wsconn configuration for clients of format f:
// the limits and deadlines of cfg, and the reasons the connection applies
// itself.
func connConfig(cfg Config, f format, m *metrics) *wsconn.Config {
	return &wsconn.Config{
		ReadLimit:  cfg.MaxMessageSize,
		QueueLimit: cfg.SendQueue,
		PongWait:   cfg.PongWait,
		WriteWait:  cfg.WriteWait,
		CloseGrace: cfg.CloseGrace,
		WriterIdle: writerIdle,
		NDJSON:     f == formatJSON,
		Wrote:      func(n, frames int) { m.wrote(f, n, frames) },

		TooBig: wsconn.Disconnect{Code: 1009,
			Reason: fmt.Sprintf("message over %d bytes", cfg.MaxMessageSize), Label: "too_big"},
		PongTimeout: wsconn.Disconnect{Code: 1001,
			Reason: fmt.Sprintf("no pong within %v", cfg.PongWait), Label: "pong_timeout"},
		WriteTimeout: wsconn.Disconnect{
			Reason: fmt.Sprintf("write blocked for %v", cfg.WriteWait), Label: "write_timeout"},
		Protocol: wsconn.Disconnect{Code: 1002, Reason: "protocol error", Label: "protocol_error"},
		Internal: wsconn.Disconnect{Code: 1011, Reason: "internal error", Label: "internal_error"},
	}
}

// writerIdle is how long a connection's writer goroutine stays once it has
// nothing to write. Long next to the gaps between events of an active
// client, so that a busy connection keeps its writer; short next to the
// ping period, so that an idle one has none.
const writerIdle = time.Second

// dropLabels is every label of hubbub_clients_dropped_total, so that each
// counter is exported (at zero) before its first drop.
var dropLabels = []string{"slow_consumer", "rate_limited", "shutdown", "too_big", "pong_timeout",
	"write_timeout", "protocol_error", "internal_error", "kicked", "banned"}
