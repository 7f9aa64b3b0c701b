package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"
)

// Config is every setting hubbub has. DefaultConfig holds the defaults;
// flags and HUBBUB_* variables fill a Config from it in main, and tests
// set fields directly.
//
// One rule for zero: a zero field takes its default (withDefaults), except
// where zero is itself a setting — History, HistoryOnJoin and
// HistoryIdleRooms (0: none), MsgRate (0: no limit), MaxConns and
// MaxConnsPerIP (0: no cap) — and strings, whose empty value means "not
// set". Those mean the same in a Config as on the command line:
// History: 0 and -history 0 both turn history off. Negative values are
// refused by validate.
type Config struct {
	// Addr is the listen address.
	Addr string
	// SendQueue is how many events may wait for one client before it is
	// dropped as a slow consumer.
	SendQueue int
	// MaxMessageSize is the largest frame a client may send, in bytes; a
	// larger one closes the connection with 1009.
	MaxMessageSize int
	// PongWait is how long a client may stay silent (no pong) before it is
	// dropped.
	PongWait time.Duration
	// PingPeriod is how often the server pings; it must be below PongWait.
	// Zero: 9/10 of PongWait.
	PingPeriod time.Duration
	// WriteWait bounds every socket write.
	WriteWait time.Duration
	// CloseGrace is how long to wait for the peer's reply to our close
	// frame before cutting the connection.
	CloseGrace time.Duration
	// PresenceLimit is the room size above which join and leave notices are
	// no longer broadcast, so that a crowd joining does not send N² events.
	PresenceLimit int
	// ShutdownTimeout bounds the graceful drain on SIGINT/SIGTERM.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout bounds how long a client may take to send its
	// request headers, upgrade included, so a peer trickling bytes
	// (slowloris) cannot hold a connection.
	ReadHeaderTimeout time.Duration
	// LogFormat is "text" or "json".
	LogFormat string
	// LogLevel is debug, info, warn or error.
	LogLevel string
	// History is how many recent messages each room keeps for replay on
	// join and recovery after a reconnect; 0 turns history off (seq and
	// epoch are still assigned).
	History int
	// HistoryOnJoin is how many kept messages a client gets when it joins
	// a room; never more than History; 0 sends none.
	HistoryOnJoin int
	// HistoryIdleRooms is how many empty rooms keep their history in
	// memory, so that their last member can still recover after a
	// reconnect; 0 keeps none.
	HistoryIdleRooms int
	// HistoryIdleTTL is how long an empty room keeps its history in
	// memory.
	HistoryIdleTTL time.Duration
	// DedupeWindow is how long a message id is remembered: a message sent
	// again with the same id by the same sender to the same room within it
	// is acked again, not delivered again (ack.go).
	DedupeWindow time.Duration
	// DataDir, when set, keeps room history on disk (DataDir/history.db)
	// so that it and its epochs survive a restart; "" keeps it in memory.
	// Servers with a DataDir are built with Open.
	DataDir string

	// NATSURL, when set, joins this node to a cluster through NATS with
	// JetStream (README "Cluster"); "" is one process with no broker.
	// Servers with a NATSURL are built with Open.
	NATSURL string
	// NATSPrefix is the first token of the cluster's NATS subjects and
	// streams; nodes with the same prefix form one cluster.
	NATSPrefix string
	// NATSReplicas is how many JetStream servers keep each of the cluster's
	// streams and its moderation bucket: 0 chooses on connect (3 when the
	// NATS cluster can place 3, else 1), 1 to 5 sets it.
	NATSReplicas int
	// NodeName names this node in the cluster's presence and logs; "": the
	// host name plus a random suffix, chosen on connect.
	NodeName string
	// PresenceInterval is how often a node tells the cluster who is in its
	// rooms (a node silent for 3 intervals has its members dropped), and
	// how often a room above PresenceLimit hears its count.
	PresenceInterval time.Duration

	// Auth is who may connect: "guest" (anyone; login optional), "login"
	// (a ticket from POST /login) or "jwt" (an HS256 JWT).
	Auth string
	// UsersFile holds "name:bcrypt-hash" lines for POST /login. Required by
	// Auth "login"; optional for "guest"; "": no logins.
	UsersFile string
	// JWTSecret is the HS256 key for Auth "jwt", at least 32 bytes.
	JWTSecret string
	// TicketTTL is how long a login ticket stays redeemable.
	TicketTTL time.Duration
	// AllowedOrigins lists browser origins, besides the server's own host,
	// that may open a WebSocket; "*" allows any.
	AllowedOrigins []string
	// TLSCert and TLSKey are PEM files; set both to serve HTTPS and WSS.
	TLSCert, TLSKey string
	// MsgRate is how many requests per second one connection may make on
	// average; 0 means no limit.
	MsgRate float64
	// MsgBurst is how many requests one connection may make at once.
	MsgBurst int
	// MaxConns caps open WebSocket connections; 0 means no cap.
	MaxConns int
	// MaxConnsPerIP caps open WebSocket connections per client address
	// (IPv6: per /64); 0 means no cap.
	MaxConnsPerIP int
	// APIKey enables the HTTP publish API (/api/…) and is the bearer token
	// it requires; "": the API is off and its paths answer 404.
	APIKey string
	// DebugAddr, when set, serves net/http/pprof on a separate listener at
	// this address.
	DebugAddr string
	// MetricsAddr, when set, serves /metrics on a separate listener at this
	// address instead of the public port; the same address as DebugAddr
	// shares the debug listener. "": /metrics on the public port.
	MetricsAddr string

	// ModerationSweep is how often expired bans and mutes, and tombstones
	// that can no longer be replayed, are forgotten (moderation.go). No
	// flag: an expired ban stops applying at once; this only bounds how
	// long its memory is held.
	ModerationSweep time.Duration

	// ConfigFile is the TOML file (configfile.go) that parseFlags read the
	// settings not given as flags or HUBBUB_ variables from; "": none. It
	// is set by -config or HUBBUB_CONFIG, never by the file itself.
	ConfigFile string
}

// DefaultConfig returns hubbub's defaults: what the binary runs with when
// no flag or variable says otherwise. This is the one place a default is
// written; flags are registered from it (registerFlags) and the README's
// table is checked against those flags (config_test.go).
func DefaultConfig() Config {
	return Config{
		Addr:              ":8080",
		SendQueue:         256,
		MaxMessageSize:    512,
		PongWait:          60 * time.Second,
		WriteWait:         10 * time.Second,
		CloseGrace:        time.Second,
		PresenceLimit:     100,
		ShutdownTimeout:   10 * time.Second,
		ReadHeaderTimeout: 5 * time.Second,
		LogFormat:         "text",
		LogLevel:          "info",
		History:           100,
		HistoryOnJoin:     50,
		HistoryIdleRooms:  1000,
		HistoryIdleTTL:    time.Hour,
		DedupeWindow:      2 * time.Minute,
		NATSPrefix:        "hubbub",
		PresenceInterval:  2 * time.Second,
		Auth:              authGuest,
		TicketTTL:         30 * time.Second,
		MsgRate:           10,
		MsgBurst:          20,
		ModerationSweep:   10 * time.Second,
	}
}

// withDefaults returns c with every zero field for which zero is not a
// setting of its own set to DefaultConfig's value (see Config for the
// rule). Applying it twice changes nothing.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	fill := func(p *int, v int) {
		if *p == 0 {
			*p = v
		}
	}
	fillDur := func(p *time.Duration, v time.Duration) {
		if *p == 0 {
			*p = v
		}
	}
	fillStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	fillStr(&c.Addr, d.Addr)
	fill(&c.SendQueue, d.SendQueue)
	fill(&c.MaxMessageSize, d.MaxMessageSize)
	fillDur(&c.PongWait, d.PongWait)
	fillDur(&c.PingPeriod, c.PongWait*9/10)
	fillDur(&c.WriteWait, d.WriteWait)
	fillDur(&c.CloseGrace, d.CloseGrace)
	fill(&c.PresenceLimit, d.PresenceLimit)
	fillDur(&c.ShutdownTimeout, d.ShutdownTimeout)
	fillDur(&c.ReadHeaderTimeout, d.ReadHeaderTimeout)
	fillStr(&c.LogFormat, d.LogFormat)
	fillStr(&c.LogLevel, d.LogLevel)
	fillDur(&c.HistoryIdleTTL, d.HistoryIdleTTL)
	fillDur(&c.DedupeWindow, d.DedupeWindow)
	fillStr(&c.NATSPrefix, d.NATSPrefix)
	fillDur(&c.PresenceInterval, d.PresenceInterval)
	fillStr(&c.Auth, d.Auth)
	fillDur(&c.TicketTTL, d.TicketTTL)
	fill(&c.MsgBurst, d.MsgBurst)
	fillDur(&c.ModerationSweep, d.ModerationSweep)
	return c
}

// validate reports settings that cannot work, or cannot work together.
func (c Config) validate() error {
	var errs []error
	for _, n := range []struct {
		name string
		v    int
	}{
		{"history", c.History}, {"history-on-join", c.HistoryOnJoin}, {"history-idle-rooms", c.HistoryIdleRooms},
		{"max-conns", c.MaxConns}, {"max-conns-per-ip", c.MaxConnsPerIP},
		{"send-queue", c.SendQueue}, {"msg-burst", c.MsgBurst}, {"presence-limit", c.PresenceLimit},
	} {
		if n.v < 0 {
			errs = append(errs, fmt.Errorf("%s %d: want 0 or more", n.name, n.v))
		}
	}
	if c.DedupeWindow < 0 {
		errs = append(errs, fmt.Errorf("dedupe-window %v: want a positive duration", c.DedupeWindow))
	}
	if c.MsgRate < 0 {
		errs = append(errs, fmt.Errorf("msg-rate %g: want 0 (no limit) or more", c.MsgRate))
	}
	if c.PingPeriod >= c.PongWait {
		errs = append(errs, fmt.Errorf("ping period %v must be shorter than pong wait %v", c.PingPeriod, c.PongWait))
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.LogFormat))
	}
	if c.MetricsAddr != "" && c.MetricsAddr == c.Addr {
		errs = append(errs, fmt.Errorf("-metrics-addr %s is the public -addr: leave -metrics-addr empty to serve /metrics there", c.MetricsAddr))
	}
	if c.NATSReplicas < 0 || c.NATSReplicas > 5 {
		errs = append(errs, fmt.Errorf("nats-replicas %d: want 0 (choose from the NATS cluster's size) or 1 to 5", c.NATSReplicas))
	}
	if c.DataDir != "" && c.NATSURL != "" {
		errs = append(errs, errors.New("-data-dir and -nats-url cannot be combined: with NATS, JetStream keeps the history"))
	}
	return errors.Join(append(errs, c.validateHistory(), c.validateAuth())...)
}

// registerFlags defines a flag for every setting a person sets on the
// command line, each defaulting to c's current value, and binds it to c.
func registerFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.Addr, "addr", c.Addr, "listen address")
	fs.IntVar(&c.SendQueue, "send-queue", c.SendQueue, "events queued per client before it is dropped as slow")
	fs.DurationVar(&c.PongWait, "pong-wait", c.PongWait, "drop a client silent for this long")
	fs.DurationVar(&c.WriteWait, "write-wait", c.WriteWait, "deadline for each socket write")
	fs.IntVar(&c.PresenceLimit, "presence-limit", c.PresenceLimit, "no join/leave notices in rooms larger than this (a presence_count instead)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on the graceful drain")
	fs.DurationVar(&c.ReadHeaderTimeout, "read-header-timeout", c.ReadHeaderTimeout, "time allowed for a request's headers (slowloris bound)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "log format: text or json")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "log level: debug, info, warn, error")
	fs.IntVar(&c.History, "history", c.History, "messages kept per room for replay and recovery (0: off)")
	fs.IntVar(&c.HistoryOnJoin, "history-on-join", c.HistoryOnJoin, "kept messages sent to a client joining a room (0: none)")
	fs.IntVar(&c.HistoryIdleRooms, "history-idle-rooms", c.HistoryIdleRooms, "empty rooms that keep their history in memory (0: none)")
	fs.DurationVar(&c.HistoryIdleTTL, "history-idle-ttl", c.HistoryIdleTTL, "how long an empty room keeps its history in memory")
	fs.DurationVar(&c.DedupeWindow, "dedupe-window", c.DedupeWindow, "how long a message id is remembered, so that a resend is acked, not delivered twice")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "keep room history on disk in this directory (default: memory only)")
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "join a cluster through these NATS servers with JetStream, comma-separated (default: none)")
	fs.IntVar(&c.NATSReplicas, "nats-replicas", c.NATSReplicas, "JetStream replicas of each stream: 0 chooses 3 when the NATS cluster can place them, else 1")
	fs.StringVar(&c.NATSPrefix, "nats-prefix", c.NATSPrefix, "subject and stream prefix; nodes sharing it form one cluster")
	fs.StringVar(&c.NodeName, "node", c.NodeName, "this node's name in the cluster (default: host name and a random suffix)")
	fs.DurationVar(&c.PresenceInterval, "presence-interval", c.PresenceInterval, "cluster presence heartbeat (silent nodes are dropped after 3), and how often big rooms hear their count")
	fs.StringVar(&c.Auth, "auth", c.Auth, "who may connect: guest, login or jwt")
	fs.StringVar(&c.UsersFile, "users", c.UsersFile, "users file of name:bcrypt-hash lines, for POST /login")
	fs.StringVar(&c.JWTSecret, "jwt-secret", c.JWTSecret, "HS256 key for -auth jwt (prefer HUBBUB_JWT_SECRET)")
	fs.DurationVar(&c.TicketTTL, "ticket-ttl", c.TicketTTL, "how long a login ticket stays redeemable")
	fs.Func("allowed-origins", "comma-separated browser origins allowed besides the server's own host (* for any)", func(v string) error {
		c.AllowedOrigins = nil
		for o := range strings.SplitSeq(v, ",") {
			if o = strings.TrimSpace(o); o != "" {
				c.AllowedOrigins = append(c.AllowedOrigins, o)
			}
		}
		return nil
	})
	fs.StringVar(&c.TLSCert, "tls-cert", c.TLSCert, "PEM certificate: serve HTTPS and WSS (see hubbub gencert)")
	fs.StringVar(&c.TLSKey, "tls-key", c.TLSKey, "PEM private key for -tls-cert")
	fs.Float64Var(&c.MsgRate, "msg-rate", c.MsgRate, "requests per second per connection (0: no limit)")
	fs.IntVar(&c.MsgBurst, "msg-burst", c.MsgBurst, "requests a connection may make at once")
	fs.IntVar(&c.MaxConns, "max-conns", c.MaxConns, "cap on open WebSocket connections (0: none)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", c.MaxConnsPerIP, "cap on open WebSocket connections per client address (0: none)")
	fs.StringVar(&c.APIKey, "api-key", c.APIKey, "bearer token enabling the HTTP publish API (prefer HUBBUB_API_KEY: flags show in ps)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "serve pprof on this separate address, e.g. 127.0.0.1:6060 (default off)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", c.MetricsAddr, "serve /metrics on this separate address instead of the public port (may equal -debug-addr)")
	fs.StringVar(&c.ConfigFile, "config", c.ConfigFile, "read settings not given as flags or HUBBUB_ variables from this TOML file")
}

// removedSettings are flags hubbub no longer has, with what to do instead,
// so that an old command line or environment fails with advice rather than
// "flag provided but not defined".
var removedSettings = map[string]string{
	"batch-window": "writes now fill up by themselves when the server is busy (docs/BENCHMARKS.md); remove the setting",
}

// parseFlags fills a Config from args, falling back to HUBBUB_<FLAG>
// environment variables (dashes become underscores) for flags not given,
// then to the -config file (HUBBUB_CONFIG), and to DefaultConfig for the
// rest.
func parseFlags(args []string, getenv func(string) string, stderr io.Writer) (Config, error) {
	c, _, err := parseSettings(args, getenv, stderr)
	return c, err
}

// parseSettings is parseFlags, also returning where each setting not left
// at its default came from: "flag -addr", "env HUBBUB_ADDR" or
// "file PATH:LINE", keyed by flag name.
func parseSettings(args []string, getenv func(string) string, stderr io.Writer) (Config, map[string]string, error) {
	c := DefaultConfig()
	origin := map[string]string{}
	fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerFlags(fs, &c)
	fs.Usage = func() { printUsage(stderr, fs) }
	if err := removedFlag(args, getenv); err != nil {
		return c, origin, err
	}
	if err := fs.Parse(args); err != nil {
		return c, origin, err
	}
	if fs.NArg() > 0 {
		return c, origin, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true; origin[f.Name] = "flag -" + f.Name })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		env := envName(f.Name)
		if v := getenv(env); v != "" && !given[f.Name] {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", env, v, err))
			}
			origin[f.Name] = "env " + env
		}
	})
	if c.ConfigFile != "" {
		errs = append(errs, applyConfigFile(fs, c.ConfigFile, origin))
	}
	return c, origin, errors.Join(errs...)
}

// envName is the environment variable for flag name: HUBBUB_ and the name
// in upper case, dashes as underscores.
func envName(name string) string {
	return "HUBBUB_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// removedFlag returns an error naming the first removed setting in args or
// the environment, with its advice.
func removedFlag(args []string, getenv func(string) string) error {
	for name, advice := range removedSettings {
		for _, a := range args {
			if a == "--" {
				break
			}
			if !strings.HasPrefix(a, "-") {
				continue // a value, not a flag
			}
			a = strings.TrimLeft(a, "-")
			if a == name || strings.HasPrefix(a, name+"=") {
				return fmt.Errorf("-%s is no longer a setting: %s", name, advice)
			}
		}
		if getenv(envName(name)) != "" {
			return fmt.Errorf("%s is no longer a setting: %s", envName(name), advice)
		}
	}
	return nil
}
