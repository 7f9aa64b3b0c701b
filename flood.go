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
	kicked  bool      // the hub has been asked to close the client
}

// newFlood returns a budget for cfg, or nil when the rate is unlimited.
func newFlood(cfg Config) *flood {
	if cfg.MsgRate <= 0 {
		return nil
	}
	return &flood{lim: rate.NewLimiter(rate.Limit(cfg.MsgRate), cfg.MsgBurst)}
}

// startFrame is called by Message for every message read. It returns
// false when the message is to be ignored because the client is being
// closed for flooding (until the hub has acted on it; the connection then
// drops whatever else arrives).
func (c *Client) startFrame() bool {
	if c.flood == nil {
		return true
	}
	c.flood.refused = false
	return !c.flood.kicked
}

// submit hands r to the hub if c's budget allows it. The first request
// refused in a frame gets one rate_limited error; the frame counts as a
// strike, and the strike that reaches floodStrikes asks the hub to close
// c with 1008 (dcFlooding). It returns false once the hub has stopped.
func (c *Client) submit(r request) bool {
	f := c.flood
	if f == nil {
		return c.hub.submit(r)
	}
	if f.kicked {
		return true
	}
	now := time.Now()
	if f.lim.AllowN(now, 1) {
		return c.hub.submit(r)
	}
	if f.refused {
		return true // this frame already struck and was told
	}
	f.refused = true
	if now.Sub(f.since) > floodWindow {
		f.strikes, f.since = 0, now
	}
	f.strikes++
	if f.strikes >= floodStrikes {
		f.kicked = true
		c.logger().Info("closing: flooding", "strikes", f.strikes, "window", floodWindow)
		return c.hub.submit(request{c: c, op: opKick})
	}
	return c.hub.submit(request{c: c, op: opFail, err: &protoError{Code: errRateLimited,
		Message: fmt.Sprintf("slow down: at most %g messages per second (bursts of %d); this one was dropped",
			float64(f.lim.Limit()), f.lim.Burst())}})
}
