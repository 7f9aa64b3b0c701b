// Command hubbub is a real-time chat and broadcast server: rooms over
// WebSockets, JSON events for browsers and plain text lines for terminals.
package main

import (
	"context"
	"crypto/tls"
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

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code, msg := exitCode(run(ctx, os.Args[1:], os.Getenv, os.Stderr))
	if msg != "" {
		fmt.Fprintln(os.Stderr, msg)
	}
	stop()
	os.Exit(code)
}

// exitCode turns what run returned into the process's exit code and the
// line to print on stderr, if any. Asking for the usage (-h, which run
// returns as flag.ErrHelp after printing it) is a success.
func exitCode(err error) (code int, msg string) {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0, ""
	case errors.Is(err, errReported):
		return 1, ""
	default:
		return 1, "hubbub: " + err.Error()
	}
}

// run runs the subcommand args[0] names (cli.go), or else parses args as the
// server's flags, serves until ctx ends, then shuts down gracefully: stop
// accepting, let the HTTP server finish ordinary requests, then drain and
// close every WebSocket within ShutdownTimeout.
func run(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	return runWith(ctx, args, processIO(getenv, stderr))
}

// runWith is run with the streams and environment in c.
func runWith(ctx context.Context, args []string, c cmdIO) error {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sc, ok := findSubcommand(args[0])
		if !ok {
			return fmt.Errorf("unknown command %q: hubbub help lists the commands; the server itself takes only flags", args[0])
		}
		return sc.run(ctx, args[1:], c)
	}
	cfg, origin, err := parseSettings(args, c.getenv, c.stderr)
	if err != nil {
		return err
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return settingsFrom(err, origin)
	}
	log, err := newLogger(cfg, c.stderr)
	if err != nil {
		return err
	}
	if cfg.ConfigFile != "" {
		log.Info("configuration file read", "file", cfg.ConfigFile)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	return serve(ctx, cfg, log, ln)
}

// serve runs hubbub on ln until ctx ends.
func serve(ctx context.Context, cfg Config, log *slog.Logger, ln net.Listener) error {
	s, err := Open(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
	if nb, ok := s.hub.broker.(*natsBroker); ok {
		// Open refused a NATS server that said it has no JetStream; this
		// keeps readiness in step with one that loses it later.
		w := watchJetStream(nb.nc, log)
		defer w.stop()
		s.addReadyCheck("jetstream", w.ready)
	}
	sides, err := startSideServers(cfg, s.metricsHandler(), log)
	if err != nil {
		ln.Close()
		s.Shutdown(context.Background())
		return err
	}
	defer func() {
		for _, d := range sides {
			d.Close()
		}
	}()
	srv := newHTTPServer(cfg, s.routes(), log)
	scheme := "http"
	if cfg.TLSCert != "" {
		tc, err := loadTLS(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			s.Shutdown(context.Background())
			return err
		}
		ln, scheme = tls.NewListener(ln, tc), "https"
	}
	log.Info("hubbub listening", "addr", ln.Addr().String(), "url", scheme+"://"+displayAddr(ln.Addr()), "version", version)
	s.auth.logMode(log)
	defer s.auth.reloadOnHangup(log)()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Shutdown(context.Background())
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	s.startDraining() // /readyz fails from here on
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

// startSideServers starts the listeners of -debug-addr and -metrics-addr:
// one when they name the same address, serving both. On error it closes
// what it had started.
func startSideServers(cfg Config, metrics http.Handler, log *slog.Logger) ([]*debugServer, error) {
	var sides []*debugServer
	start := func(addr string, pprofOn bool, m http.Handler) error {
		d, err := startSideServer(addr, pprofOn, m, log)
		if err != nil {
			for _, d := range sides {
				d.Close()
			}
			return err
		}
		sides = append(sides, d)
		return nil
	}
	shared := cfg.MetricsAddr != "" && cfg.MetricsAddr == cfg.DebugAddr
	if cfg.DebugAddr != "" {
		var m http.Handler
		if shared {
			m = metrics
		}
		if err := start(cfg.DebugAddr, true, m); err != nil {
			return nil, err
		}
	}
	if cfg.MetricsAddr != "" && !shared {
		if err := start(cfg.MetricsAddr, false, metrics); err != nil {
			return nil, err
		}
	}
	return sides, nil
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
