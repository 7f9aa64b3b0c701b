// Command hubbub is a real-time chat and broadcast server: rooms over
// WebSockets, JSON events for browsers and plain text lines for terminals.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Config is every setting hubbub has. Zero fields take the default named in
// their comment (see withDefaults). Flags and HUBBUB_* variables fill it in
// main; tests set fields directly.
type Config struct {
	// Addr is the listen address. Default ":8080".
	Addr string
	// SendQueue is how many events may wait for one client before it is
	// dropped as a slow consumer. Default 256.
	SendQueue int
	// MaxMessageSize is the largest frame a client may send, in bytes; a
	// larger one closes the connection with 1009. Default 512.
	MaxMessageSize int
	// PongWait is how long a client may stay silent (no pong) before it is
	// dropped. Default 60s.
	PongWait time.Duration
	// PingPeriod is how often the server pings; it must be below PongWait.
	// Default 9/10 of PongWait.
	PingPeriod time.Duration
	// WriteWait bounds every socket write. Default 10s.
	WriteWait time.Duration
	// CloseGrace is how long to wait for the peer's reply to our close
	// frame before cutting the connection. Default 1s.
	CloseGrace time.Duration
	// BatchWindow is how long a writePump pauses after a drain that found
	// more than one event, so the next frame carries more. Lone events are
	// never delayed. Default 10ms; a negative value disables the pause.
	BatchWindow time.Duration
	// PresenceLimit is the room size above which join and leave notices are
	// no longer broadcast, so that a crowd joining does not send N² events.
	// Default 100.
	PresenceLimit int
	// ShutdownTimeout bounds the graceful drain on SIGINT/SIGTERM.
	// Default 10s.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers, upgrade included, so a peer trickling bytes
	// (slowloris) cannot hold a connection. Default 5s.
	ReadHeaderTimeout time.Duration
	// LogFormat is "text" or "json". Default "text".
	LogFormat string
	// LogLevel is debug, info, warn or error. Default "info".
	LogLevel string
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	set := func(p *time.Duration, d time.Duration) {
		if *p == 0 {
			*p = d
		}
	}
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 256
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = 512
	}
	set(&c.PongWait, 60*time.Second)
	set(&c.PingPeriod, c.PongWait*9/10)
	set(&c.WriteWait, 10*time.Second)
	set(&c.CloseGrace, time.Second)
	set(&c.ShutdownTimeout, 10*time.Second)
	set(&c.ReadHeaderTimeout, 5*time.Second)
	switch {
	case c.BatchWindow == 0:
		c.BatchWindow = defaultBatchWindow
	case c.BatchWindow < 0:
		c.BatchWindow = 0
	}
	if c.PresenceLimit <= 0 {
		c.PresenceLimit = 100
	}
	if c.LogFormat == "" {
		c.LogFormat = "text"
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c
}

// validate reports settings that cannot work together.
func (c Config) validate() error {
	if c.PingPeriod >= c.PongWait {
		return fmt.Errorf("ping period %v must be shorter than pong wait %v", c.PingPeriod, c.PongWait)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("log format %q: want text or json", c.LogFormat)
	}
	return nil
}

// defaultBatchWindow is BatchWindow's default. The reference measurements in
// docs/BENCHMARKS.md show 10ms buys most of the throughput a window can.
const defaultBatchWindow = 10 * time.Millisecond

// parseFlags fills a Config from args, falling back to HUBBUB_<FLAG>
// environment variables (dashes become underscores) for flags not given.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Addr, "addr", ":8080", "listen address")
	fs.IntVar(&c.SendQueue, "send-queue", 256, "events queued per client before it is dropped as slow")
	fs.DurationVar(&c.PongWait, "pong-wait", 60*time.Second, "drop a client silent for this long")
	fs.DurationVar(&c.WriteWait, "write-wait", 10*time.Second, "deadline for each socket write")
	fs.DurationVar(&c.BatchWindow, "batch-window", defaultBatchWindow, "pause after a multi-event write so frames fill up (0: off)")
	fs.IntVar(&c.PresenceLimit, "presence-limit", 100, "no join/leave notices in rooms larger than this")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on the graceful drain")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 5*time.Second, "time allowed for a request's headers (slowloris bound)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: hubbub [flags]\n\nEvery flag can also be set as HUBBUB_<NAME>, e.g. HUBBUB_ADDR.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := "HUBBUB_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
		}
	})
	if c.BatchWindow == 0 {
		c.BatchWindow = -1 // -batch-window 0 means off, which Config spells negative
	}
	return c, errors.Join(errs...)
}

// newLogger builds the process logger.
func newLogger(c Config, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return nil, fmt.Errorf("log level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return slog.New(slog.NewTextHandler(w, opts)), nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "hubbub:", err)
		}
		os.Exit(1)
	}
}

// run parses args, serves until ctx ends, then shuts down gracefully: stop
// accepting, let the HTTP server finish ordinary requests, then drain and
// close every WebSocket within ShutdownTimeout.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	cfg, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return err
	}
	log, err := newLogger(cfg, stderr)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return serve(ctx, cfg, log, ln)
}

// serve runs hubbub on ln until ctx ends.
func serve(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener) error {
	s := NewServer(cfg, log)
	srv := newHTTPServer(cfg, s.routes(), log)
	log.Info("hubbub listening", "addr", ln.Addr().String(), "url", "http://"+displayAddr(ln.Addr()))

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	httpErr := srv.Shutdown(sctx) // stops accepting; ignores hijacked WebSockets
	hubErr := s.Shutdown(sctx)    // so drain those here
	<-errc
	if err := errors.Join(httpErr, hubErr); err != nil {
		return fmt.Errorf("%w: %w", errShutdown, err)
	}
	log.Info("stopped")
	return nil
}

// newHTTPServer returns the http.Server that serves h, with the timeouts
// that bound slow or silent peers before and during the upgrade. Tests use
// it too, so they exercise the same limits.
func newHTTPServer(cfg Config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       15 * time.Second, // cleared by the upgrade on /ws
		WriteTimeout:      15 * time.Second, // likewise
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// displayAddr turns a listen address into one a browser can open.
func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
