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
	// more than one event, or after a write that came within two windows of
	// the previous one, so the next write carries more. An event for a
	// client that was quiet goes out at once. Default 30ms; a negative
	// value disables the pause.
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
	// History is how many recent messages each room keeps for replay on
	// join and recovery after a reconnect. Default 100; negative turns
	// history off (seq and epoch are still assigned).
	History int
	// HistoryOnJoin is how many kept messages a client gets when it joins
	// a room. Default 50; never more than History; negative sends none.
	HistoryOnJoin int
	// HistoryIdleRooms is how many empty rooms keep their history in
	// memory, so that their last member can still recover after a
	// reconnect. Default 1000; negative keeps none.
	HistoryIdleRooms int
	// HistoryIdleTTL is how long an empty room keeps its history in
	// memory. Default 1h.
	HistoryIdleTTL time.Duration
	// DataDir, when set, keeps room history on disk (DataDir/history.db)
	// so that it and its epochs survive a restart. Default "": memory
	// only. Servers with a DataDir are built with OpenServer.
	DataDir string

	// historyStore is the store OpenServer opened for DataDir.
	historyStore *boltStore

	// NATSURL, when set, joins this node to a cluster through NATS with
	// JetStream (README "Cluster"). Default "": one process, no broker.
	NATSURL string
	// NATSPrefix is the first token of the cluster's NATS subjects and
	// streams; nodes with the same prefix form one cluster. Default "hubbub".
	NATSPrefix string
	// NodeName names this node in the cluster's presence and logs.
	// Default "": the host name plus a random suffix, chosen on connect.
	NodeName string
	// PresenceInterval is how often a node tells the cluster who is in its
	// rooms; a node silent for 3 intervals has its members dropped.
	// Default 2s.
	PresenceInterval time.Duration

	// broker is the Broker OpenServer connected for NATSURL; nil: a
	// private in-memory one.
	broker Broker

	// Auth is who may connect: "guest" (anyone; login optional), "login"
	// (a ticket from POST /login) or "jwt" (an HS256 JWT). Default "guest".
	Auth string
	// UsersFile holds "name:bcrypt-hash" lines for POST /login. Required by
	// Auth "login"; optional for "guest". Default "" (no logins).
	UsersFile string
	// JWTSecret is the HS256 key for Auth "jwt", at least 32 bytes.
	// Default "".
	JWTSecret string
	// TicketTTL is how long a login ticket stays redeemable. Default 30s.
	TicketTTL time.Duration
	// AllowedOrigins lists browser origins, besides the server's own host,
	// that may open a WebSocket; "*" allows any. Default none.
	AllowedOrigins []string
	// TLSCert and TLSKey are PEM files; set both to serve HTTPS and WSS.
	// Default "" (plain HTTP).
	TLSCert, TLSKey string
	// MsgRate is how many requests per second one connection may make on
	// average; a negative value means no limit. Default 10.
	MsgRate float64
	// MsgBurst is how many requests one connection may make at once.
	// Default 20.
	MsgBurst int
	// MaxConns caps open WebSocket connections; 0 means no cap. Default 0.
	MaxConns int
	// MaxConnsPerIP caps open WebSocket connections per client address
	// (IPv6: per /64); 0 means no cap. Default 0.
	MaxConnsPerIP int
	// APIKey enables the HTTP publish API (/api/…) and is the bearer token
	// it requires. Default "": the API is off and its paths answer 404.
	APIKey string
	// DebugAddr, when set, serves net/http/pprof on a separate listener at
	// this address. Default "": off.
	DebugAddr string
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
	if c.BatchWindow == 0 {
		c.BatchWindow = defaultBatchWindow // negative stays: it means off
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
	// Negative history settings mean "none" and are kept as they are, so
	// that applying defaults twice changes nothing.
	if c.History == 0 {
		c.History = 100
	}
	if c.HistoryOnJoin == 0 {
		c.HistoryOnJoin = 50
	}
	if c.HistoryIdleRooms == 0 {
		c.HistoryIdleRooms = 1000
	}
	set(&c.HistoryIdleTTL, time.Hour)
	if c.NATSPrefix == "" {
		c.NATSPrefix = "hubbub"
	}
	set(&c.PresenceInterval, 2*time.Second)
	if c.Auth == "" {
		c.Auth = authGuest
	}
	set(&c.TicketTTL, 30*time.Second)
	if c.MsgRate == 0 {
		c.MsgRate = 10
	}
	if c.MsgBurst == 0 {
		c.MsgBurst = 20
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
	if err := c.validateHistory(); err != nil {
		return err
	}
	return c.validateAuth()
}

// defaultBatchWindow is BatchWindow's default. On the 2-core VM of
// docs/BENCHMARKS.md, 30ms against 10ms cut the server's CPU at 100k
// deliveries/s from 98 % to 73 %, which lowered p99 rather than raising it,
// and raised the highest rate that holds p99 under 100 ms from 100k to
// 500k (JSON) and 250k (text); at 10k deliveries/s it changed nothing.
const defaultBatchWindow = 30 * time.Millisecond

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
	fs.DurationVar(&c.BatchWindow, "batch-window", defaultBatchWindow, "pause after a multi-event or closely following write so writes fill up (0: off)")
	fs.IntVar(&c.PresenceLimit, "presence-limit", 100, "no join/leave notices in rooms larger than this")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on the graceful drain")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", 5*time.Second, "time allowed for a request's headers (slowloris bound)")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.IntVar(&c.History, "history", 100, "messages kept per room for replay and recovery (0: off)")
	fs.IntVar(&c.HistoryOnJoin, "history-on-join", 50, "kept messages sent to a client joining a room (0: none)")
	fs.IntVar(&c.HistoryIdleRooms, "history-idle-rooms", 1000, "empty rooms that keep their history in memory (0: none)")
	fs.DurationVar(&c.HistoryIdleTTL, "history-idle-ttl", time.Hour, "how long an empty room keeps its history in memory")
	fs.StringVar(&c.DataDir, "data-dir", "", "keep room history on disk in this directory (default: memory only)")
	fs.StringVar(&c.NATSURL, "nats-url", "", "join a cluster through this NATS server with JetStream (default: none)")
	fs.StringVar(&c.NATSPrefix, "nats-prefix", "hubbub", "subject and stream prefix; nodes sharing it form one cluster")
	fs.StringVar(&c.NodeName, "node", "", "this node's name in the cluster (default: host name and a random suffix)")
	fs.DurationVar(&c.PresenceInterval, "presence-interval", 2*time.Second, "cluster presence heartbeat; silent nodes are dropped after 3")
	fs.StringVar(&c.Auth, "auth", authGuest, "who may connect: guest, login or jwt")
	fs.StringVar(&c.UsersFile, "users", "", "users file of name:bcrypt-hash lines, for POST /login")
	fs.StringVar(&c.JWTSecret, "jwt-secret", "", "HS256 key for -auth jwt (prefer HUBBUB_JWT_SECRET)")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", 30*time.Second, "how long a login ticket stays redeemable")
	fs.Func("allowed-origins", "comma-separated browser origins allowed besides the server's own host (* for any)", func(v string) error {
		c.AllowedOrigins = nil
		for o := range strings.SplitSeq(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
		return nil
	})
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate: serve HTTPS and WSS (see hubbub gencert)")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for -tls-cert")
	fs.Float64Var(&c.MsgRate, "msg-rate", 10, "requests per second per connection (0: no limit)")
	fs.IntVar(&c.MsgBurst, "msg-burst", 20, "requests a connection may make at once")
	fs.IntVar(&c.MaxConns, "max-conns", 0, "cap on open WebSocket connections (0: none)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "cap on open WebSocket connections per client address (0: none)")
	fs.StringVar(&c.APIKey, "api-key", "", "bearer token enabling the HTTP publish API (prefer HUBBUB_API_KEY: flags show in ps)")
	fs.StringVar(&c.DebugAddr, "debug-addr", "", "serve pprof on this separate address, e.g. 127.0.0.1:6060 (default off)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: hubbub [flags]\n       hubbub gencert|hash-password [flags]\n\nEvery flag can also be set as HUBBUB_<NAME>, e.g. HUBBUB_ADDR.\n\n")
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
	for _, p := range []*int{&c.History, &c.HistoryOnJoin, &c.HistoryIdleRooms} {
		if *p == 0 {
			*p = -1 // likewise: 0 on the command line means none
		}
	}
	if c.MsgRate == 0 {
		c.MsgRate = -1 // likewise for -msg-rate 0
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

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "version":
			fmt.Println(version)
			return
		case "healthcheck":
			os.Exit(healthcheck(os.Args[2:], os.Getenv, os.Stderr))
		}
	}
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
	if len(args) > 0 {
		switch args[0] {
		case "gencert":
			return gencert(args[1:], os.Stdout, stderr, time.Now())
		case "hash-password":
			return hashPassword(args[1:], os.Stdin, os.Stdout, stderr, hiddenStdin())
		}
	}
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
	if cfg.DebugAddr != "" {
		d, err := startDebug(cfg.DebugAddr, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer d.Close()
	}
	s, err := OpenServer(cfg, log)
	if err != nil {
		ln.Close()
		return err
	}
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
