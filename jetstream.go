package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// minNATSVersion is the oldest nats-server hubbub supports: the oldest the
// nats.go jetstream package works with. The tests run against the embedded
// server of go.mod and against Debian 12's nats-server 2.9.10.
var minNATSVersion = [3]int{2, 9, 0}

// Why a NATS server cannot carry a cluster. Both are settled answers from
// the server, not a failure to reach it.
var (
	errJetStreamOff = errors.New("JetStream is not enabled")
	errNATSTooOld   = errors.New("nats-server too old")
)

// jetStreamRecheck is how often a watcher asks again while JetStream is
// unavailable on a connected server, so that a server that gains it (or is
// slow to start it) makes the node ready without a reconnect.
const jetStreamRecheck = 2 * time.Second

// checkJetStream asks the server nc is connected to whether it can carry a
// cluster: a version of at least minNATSVersion, and JetStream enabled for
// our account. The error says what to do about it.
func checkJetStream(ctx context.Context, nc *nats.Conn) error {
	url := nc.ConnectedUrlRedacted()
	if v := nc.ConnectedServerVersion(); v != "" {
		if ok, err := natsVersionAtLeast(v, minNATSVersion); err == nil && !ok {
			return fmt.Errorf("%w: nats-server %s on %s is older than %d.%d.%d, the oldest hubbub supports; upgrade it",
				errNATSTooOld, v, url, minNATSVersion[0], minNATSVersion[1], minNATSVersion[2])
		}
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream on %s: %w", url, err)
	}
	_, err = js.AccountInfo(ctx)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return fmt.Errorf("%w on %s; start nats-server with -js", errJetStreamOff, url)
	case errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("%w for this connection's account on %s; enable jetstream in the account's configuration",
			errJetStreamOff, url)
	}
	return fmt.Errorf("JetStream on %s did not answer: %w", url, err)
}

// requireJetStream is newNATSBroker's startup check. It refuses a server
// that has answered that it cannot carry a cluster (JetStream off, or too
// old), so a misconfigured deployment fails at once and says why. A server
// not reachable yet, or slow to answer, is not refused: the node starts
// not ready and jetStreamWatch checks again once it connects.
func requireJetStream(nc *nats.Conn) error {
	if !nc.IsConnected() {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), setupWait)
	defer cancel()
	err := checkJetStream(ctx, nc)
	if errors.Is(err, errJetStreamOff) || errors.Is(err, errNATSTooOld) {
		return err
	}
	return nil
}

// natsVersionAtLeast reports whether the server version v ("2.9.10",
// "2.11.0-RC.1") is at least min.
func natsVersionAtLeast(v string, min [3]int) (bool, error) {
	core, _, _ := strings.Cut(strings.TrimPrefix(v, "v"), "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return false, fmt.Errorf("server version %q: want MAJOR.MINOR.PATCH", v)
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return false, fmt.Errorf("server version %q: %w", v, err)
		}
		if n != min[i] {
			return n > min[i], nil
		}
	}
	return true, nil
}

// jetStreamWatch keeps a node's readiness in step with JetStream on its NATS
// connection after startup: NATS may come up only after the node did, or
// restart without -js. It checks on every (re)connect, and again every
// jetStreamRecheck while the answer is no; ready reports the last answer.
// Exiting instead would drop every client for a fault that restarting
// hubbub cannot fix, while not ready takes the node out of the load
// balancer and keeps its connections, as for a NATS outage.
type jetStreamWatch struct {
	nc     *nats.Conn
	log    *slog.Logger
	events chan nats.Status
	err    atomic.Pointer[error] // the last check's answer; nil: JetStream is there
	ctx    context.Context       // cancelled by stop, ending a check under way
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	once   sync.Once
}

// watchJetStream starts watching nc. Call stop to end it.
func watchJetStream(nc *nats.Conn, log *slog.Logger) *jetStreamWatch {
	ctx, cancel := context.WithCancel(context.Background())
	w := &jetStreamWatch{
		nc:     nc,
		log:    log,
		events: nc.StatusChanged(nats.CONNECTED, nats.CLOSED),
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go w.run()
	return w
}

// run checks now if connected, then on every reconnect, until the
// connection closes or stop is called.
func (w *jetStreamWatch) run() {
	defer close(w.done)
	var retry <-chan time.Time
	check := func() {
		if !w.check() {
			retry = time.After(jetStreamRecheck)
		} else {
			retry = nil
		}
	}
	if w.nc.IsConnected() {
		check()
	}
	for {
		select {
		case st, ok := <-w.events:
			if !ok || st == nats.CLOSED {
				return
			}
			check() // CONNECTED: a new server, or the same one restarted
		case <-retry:
			retry = nil
			if w.nc.IsConnected() {
				check()
			}
		}
	}
}

// check asks the server once, records the answer, and logs a change:
// ERROR when JetStream becomes unavailable, INFO when it is back. It
// reports whether JetStream is there.
func (w *jetStreamWatch) check() bool {
	ctx, cancel := context.WithTimeout(w.ctx, setupWait)
	defer cancel()
	err := checkJetStream(ctx, w.nc)
	if w.ctx.Err() != nil {
		return true // stopped: nobody asks any more
	}
	var prev error
	if p := w.err.Load(); p != nil {
		prev = *p
	}
	switch {
	case err == nil:
		w.err.Store(nil)
		if prev != nil {
			w.log.Info("JetStream available again; node ready", "url", w.nc.ConnectedUrlRedacted())
		}
		return true
	case prev == nil || prev.Error() != err.Error():
		w.log.Error("JetStream unavailable; node not ready until it is", "err", err)
	}
	w.err.Store(&err)
	return false
}

// ready is the node's readiness check: nil while JetStream answered the
// last check.
func (w *jetStreamWatch) ready() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// stop ends the watch and waits for it. Safe to call more than once.
func (w *jetStreamWatch) stop() {
	w.once.Do(func() {
		w.cancel()
		w.nc.RemoveStatusListener(w.events)
	})
	<-w.done
}
