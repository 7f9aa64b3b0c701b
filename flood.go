package main

import (
	"fmt"
	"time"

	"golang.org/x/time/rate"
)

// A client "keeps flooding" when floodStrikes of its frames are refused
// within floodWindow; it is then closed with 1008 (policy violation). A
// strike is a frame with at least one refused request, so pasting many
// lines at once costs one strike, not one per line.
const (
	floodStrikes = 10
	floodWindow  = 10 * time.Second
)

// flood is one client's message budget: a token bucket of -msg-burst
// tokens refilled at -msg-rate per second, and the strikes against it.
// Used only by the client's reader (Client.Message).
type flood struct {
	lim     *rate.Limiter
	strikes int       // refused frames since since
	since   time.Time // start of the current strike window
	refused bool      // the current frame has had a request refused
	drops   int       // requests of the current frame refused
	kicked  bool      // the hub has been asked to close the client
}

// newFlood returns a budget for cfg, or nil when the rate is unlimited.
func newFlood(cfg Config) *flood {
	if cfg.MsgRate <= 0 {
		return nil
	}
	return &flood{lim: rate.NewLimiter(rate.Limit(cfg.MsgRate), cfg.MsgBurst)}
}

// startFrame is called by Client.Message for every message read, on a
// nil flood too (no limit). It returns false when the message is to be
// ignored because the client is being closed for flooding (until the hub
// has acted on it; the connection then drops whatever else arrives).
func (f *flood) startFrame() bool {
	if f == nil {
		return true
	}
	f.refused, f.drops = false, 0
	return !f.kicked
}

// dropped is how many requests of the current frame were refused (0 for
// a nil flood), as long as the client is not being closed for flooding:
// then it gets its close frame instead.
func (f *flood) dropped() int {
	if f == nil || f.kicked {
		return 0
	}
	return f.drops
}

// floodVerdict is what spend decides about one command.
type floodVerdict uint8

const (
	floodPass floodVerdict = iota // within budget: submit it
	floodWarn                     // refused: tell the client (once per frame)
	floodDrop                     // refused; the client was told already
	floodKick                     // refused, and the client keeps flooding: close it
)

// spend takes one token for a command at now and says what to do with it.
// A frame with a refused command counts as one strike, so pasting many
// lines at once costs one strike, not one per line; the strike that
// reaches floodStrikes within floodWindow makes the client a flooder. A
// nil flood passes everything.
func (f *flood) spend(now time.Time) floodVerdict {
	switch {
	case f == nil:
		return floodPass
	case f.kicked:
		return floodDrop
	case f.lim.AllowN(now, 1):
		return floodPass
	}
	f.drops++
	if f.refused {
		return floodDrop
	}
	f.refused = true
	if now.Sub(f.since) > floodWindow {
		f.strikes, f.since = 0, now
	}
	f.strikes++
	if f.strikes >= floodStrikes {
		f.kicked = true
		return floodKick
	}
	return floodWarn
}

// refusal is the error a client gets when dropped of the total requests
// of a frame were over its budget.
func (f *flood) refusal(dropped, total int) *protoError {
	what := "this one was dropped"
	if total > 1 {
		what = fmt.Sprintf("%d of the %d lines of this frame were dropped", dropped, total)
	}
	return &protoError{Code: errRateLimited,
		Message: fmt.Sprintf("slow down: at most %g messages per second (bursts of %d); %s",
			float64(f.lim.Limit()), f.lim.Burst(), what)}
}
