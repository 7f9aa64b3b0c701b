package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Scenario names accepted by -scenario.
const (
	scenarioFanout = "fanout"
	scenarioRooms  = "rooms"
	scenarioIdle   = "idle"
	scenarioChurn  = "churn"
)

// Client protocols accepted by -proto.
const (
	// protoHubbub speaks hubbub: room, name and format in the URL query and
	// a welcome frame that confirms the join.
	protoHubbub = "hubbub"
	// protoRaw speaks to plain text relays such as the gorilla chat
	// example: bare text frames, joined once the handshake is done.
	protoRaw = "raw"
	// protoCentrifugo speaks Centrifugo's bidirectional JSON protocol:
	// connect, subscribe to one channel per room, publish.
	protoCentrifugo = "centrifugo"
)

// Message formats accepted by -format. They match hubbub's ?format= values;
// formatCentrifugo is never given by the user but set by -proto centrifugo,
// so that the frame builders and parsers need to look at one value only.
const (
	formatJSON       = "json"
	formatText       = "text"
	formatCentrifugo = "centrifugo"
)

// maxFrame is the largest client frame hubbub (and the gorilla chat example)
// accepts; a bigger one is closed with 1009, which would ruin the run.
const maxFrame = 512

// minSize is the smallest -size that still fits the marker with a long sender
// index and sequence number, so every message can carry its id and send time.
const minSize = 48

// Config is one run of the load generator. Defaults are filled in by
// defaultConfig; flags are read only in main.go, tests set fields directly.
type Config struct {
	// Scenario is fanout, rooms, idle or churn. Default fanout.
	Scenario string
	// URL is the WebSocket endpoint. Default ws://127.0.0.1:8080/ws.
	// Only loopback hosts are accepted unless AllowRemote is set.
	URL string
	// AllowRemote lets URL and SourceIPs name hosts other than loopback.
	// Default false: a typo must not turn the tool against a server
	// someone else runs.
	AllowRemote bool
	// Proto is the client protocol: hubbub, raw or centrifugo. Default
	// hubbub.
	Proto string
	// Raw is short for Proto raw (-raw predates -proto): plain text frames
	// and no query parameters, for relays such as the gorilla chat example.
	// normalize keeps it equal to Proto == raw. Default false.
	Raw bool
	// Format is json or text (hubbub's ?format=), for Proto hubbub only:
	// normalize sets text for raw and centrifugo for centrifugo. Default
	// json.
	Format string
	// Clients is the total number of client connections over all shards.
	// Default 100.
	Clients int
	// Senders is the number of sending clients: in total for fanout, per room
	// for rooms and churn. Default 1.
	Senders int
	// Rate is messages per second per sender. Default 1.
	Rate float64
	// Duration is the measurement window (and the hold time for idle).
	// Default 10s.
	Duration time.Duration
	// Warmup is how long senders run after all clients connected before the
	// window opens, so that connection setup does not skew latency.
	// Default 2s.
	Warmup time.Duration
	// Drain is the longest wait after the window closes for in-flight
	// messages; it ends early once every expected delivery arrived.
	// Default 3s.
	Drain time.Duration
	// Size is the chat text length in bytes, marker included. Default 128.
	Size int
	// Rooms is the number of rooms for rooms and churn. Default 10 for rooms,
	// 1 for churn, and always 1 for fanout and idle.
	Rooms int
	// Ramp is new connections per second while connecting; 0 means as fast
	// as DialConcurrency allows. Default 0.
	Ramp float64
	// ChurnRate is disconnect+reconnect cycles per second in churn.
	// Default 10.
	ChurnRate float64
	// SourceIPs are local addresses to dial from, round-robin by client
	// index, so that many connections do not run out of ephemeral ports.
	// Default none (the kernel picks).
	SourceIPs []netip.Addr
	// ServerPID, if not 0, is the server process whose RSS and CPU time are
	// read from /proc. Default 0.
	ServerPID int
	// Ticket, if set, is added as the ticket= query parameter of every
	// connection. A hubbub login ticket is single-use, so only the first
	// connection gets in with it; LoginUser gets one per connection.
	// Default "".
	Ticket string
	// LoginUser and LoginPassword, if set, log every connection in with
	// POST /login on the target's host just before it dials, and put the
	// single-use ticket that returns in ticket=. Proto hubbub only.
	// Default "" (no login).
	LoginUser, LoginPassword string
	// JWTSecret, if set, signs an HS256 token per connection with sub set
	// to the connection's name (unique per connection) and exp five
	// minutes ahead, and puts it in ticket=. Proto hubbub only. Default "".
	JWTSecret string
	// Header holds extra handshake headers (e.g. Authorization). Default none.
	Header http.Header
	// Shard is this process's part of the client index space. Default 0/1.
	Shard Shard
	// DialTimeout bounds each handshake. Default 10s.
	DialTimeout time.Duration
	// ReadBuffer is each connection's read buffer in bytes. Default 0,
	// which means 512 for idle (held memory per connection is the point
	// there) and 16384 otherwise: a busy receiver then takes many frames
	// per read syscall, so the tool is less often the bottleneck.
	ReadBuffer int
	// DialConcurrency bounds handshakes in flight. Default 64.
	DialConcurrency int
	// CloseTimeout bounds the closing handshake of all connections at the
	// end; stragglers are closed hard. Default 5s.
	CloseTimeout time.Duration
	// Progress, if not nil, receives a live status line once a second.
	// Default nil (quiet).
	Progress io.Writer
	// Thresholds decide whether the run passes; each field states its
	// default.
	Thresholds Thresholds
	// Args is the command line as the report's metadata shows it, secrets
	// redacted; parseArgs sets it. Default none.
	Args []string
}

// defaultConfig returns a Config with every default from the field docs.
func defaultConfig() Config {
	return Config{
		Scenario:        scenarioFanout,
		URL:             "ws://127.0.0.1:8080/ws",
		Proto:           protoHubbub,
		Format:          formatJSON,
		Clients:         100,
		Senders:         1,
		Rate:            1,
		Duration:        10 * time.Second,
		Warmup:          2 * time.Second,
		Drain:           3 * time.Second,
		Size:            128,
		ChurnRate:       10,
		Shard:           Shard{Index: 0, Count: 1},
		DialTimeout:     10 * time.Second,
		DialConcurrency: 64,
		CloseTimeout:    5 * time.Second,
	}
}

// normalize fills scenario-dependent defaults and checks the combination of
// fields, so that a bad run fails before it opens a single connection.
func (c *Config) normalize() error {
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 16384
		if c.Scenario == scenarioIdle {
			c.ReadBuffer = 512
		}
	}
	switch c.Scenario {
	case scenarioFanout, scenarioIdle:
		c.Rooms = 1
	case scenarioRooms:
		if c.Rooms == 0 {
			c.Rooms = 10
		}
	case scenarioChurn:
		if c.Rooms == 0 {
			c.Rooms = 1
		}
		if c.ChurnRate <= 0 {
			return errors.New("-churn-rate must be > 0 for churn")
		}
	default:
		return fmt.Errorf("unknown scenario %q (want fanout, rooms, idle or churn)", c.Scenario)
	}
	if err := c.normalizeProto(); err != nil {
		return err
	}
	if c.Clients < 1 {
		return errors.New("-clients must be >= 1")
	}
	if c.Rooms < 1 || c.Rooms > c.Clients {
		return fmt.Errorf("-rooms %d must be between 1 and -clients %d", c.Rooms, c.Clients)
	}
	if c.Scenario == scenarioIdle {
		c.Senders = 0
	} else {
		perRoom := c.Clients / c.Rooms
		if c.Scenario == scenarioFanout {
			perRoom = c.Clients
		}
		if c.Senders < 1 || c.Senders > perRoom {
			return fmt.Errorf("-senders %d must be between 1 and %d for %s", c.Senders, perRoom, c.Scenario)
		}
		if c.Rate <= 0 {
			return errors.New("-rate must be > 0")
		}
	}
	if c.Duration <= 0 {
		return errors.New("-duration must be > 0")
	}
	if err := c.Thresholds.check(c.Scenario); err != nil {
		return err
	}
	if err := c.checkAuth(); err != nil {
		return err
	}
	if c.Warmup < 0 || c.Drain < 0 || c.Ramp < 0 {
		return errors.New("-warmup, -drain and -ramp must not be negative")
	}
	if max := maxSize(c.Format); c.Size < minSize || c.Size > max {
		return fmt.Errorf("-size %d must be between %d and %d for format %s (frame limit %d bytes)",
			c.Size, minSize, max, c.Format, maxFrame)
	}
	if c.Shard.Count < 1 || c.Shard.Index < 0 || c.Shard.Index >= c.Shard.Count {
		return fmt.Errorf("bad shard %d/%d", c.Shard.Index, c.Shard.Count)
	}
	if c.Shard.Count > c.Clients {
		return fmt.Errorf("-shard %d/%d: more shards than clients", c.Shard.Index, c.Shard.Count)
	}
	base, err := c.baseURL()
	if err != nil {
		return err
	}
	if err := c.checkSourceIPs(base.Hostname()); err != nil {
		return err
	}
	if c.DialConcurrency < 1 {
		c.DialConcurrency = 1
	}
	return nil
}

// normalizeProto reconciles Raw with Proto and sets the Format each
// protocol implies.
func (c *Config) normalizeProto() error {
	if c.Proto == "" {
		c.Proto = protoHubbub
	}
	if c.Raw {
		if c.Proto != protoHubbub && c.Proto != protoRaw {
			return fmt.Errorf("-raw conflicts with -proto %s", c.Proto)
		}
		c.Proto = protoRaw
	}
	switch c.Proto {
	case protoHubbub:
		if c.Format != formatJSON && c.Format != formatText {
			return fmt.Errorf("unknown format %q (want json or text)", c.Format)
		}
	case protoRaw:
		c.Format = formatText
	case protoCentrifugo:
		c.Format = formatCentrifugo
	default:
		return fmt.Errorf("unknown protocol %q (want hubbub, raw or centrifugo)", c.Proto)
	}
	c.Raw = c.Proto == protoRaw
	return nil
}

// checkAuth refuses credentials that cannot work together: only one way
// to fill ticket=, only for hubbub (whose /login and tokens they are), and
// no Authorization header, which hubbub reads before ticket=.
func (c *Config) checkAuth() error {
	ways := 0
	for _, set := range []bool{c.Ticket != "", c.LoginUser != "" || c.LoginPassword != "", c.JWTSecret != ""} {
		if set {
			ways++
		}
	}
	if ways == 0 {
		return nil
	}
	if ways > 1 {
		return errors.New("-ticket, -login and -jwt-secret each fill ticket=; give only one")
	}
	if c.Ticket != "" {
		return nil
	}
	if c.LoginUser != "" && c.LoginPassword == "" || c.LoginUser == "" && c.LoginPassword != "" {
		return errors.New("-login needs both a user and a password: -login user:password")
	}
	if c.Proto != protoHubbub {
		return fmt.Errorf("-login and -jwt-secret speak hubbub's auth; -proto %s has none", c.Proto)
	}
	if c.Header.Get("Authorization") != "" {
		return errors.New("-header Authorization would override the ticket that -login or -jwt-secret puts in ticket=; drop one")
	}
	return nil
}

// maxSize is the largest -size whose frame stays within maxFrame: the text
// itself for text, the whole send_message envelope for JSON, the publish
// command with the longest id and room name for centrifugo. Centrifugo
// itself takes larger frames, but one limit for all protocols lets the same
// -size run against every server.
func maxSize(format string) int {
	switch format {
	case formatJSON:
		return maxFrame - len(jsonSendPrefix) - len(jsonSendSuffix)
	case formatCentrifugo:
		return maxFrame - centrifugoPublishOverhead
	}
	return maxFrame
}

// baseURL parses and checks URL. It refuses anything but ws/wss, and hosts
// other than loopback unless AllowRemote is set: the tool exists to load a
// server on the same machine, and a typo must not turn it against someone
// else's.
func (c *Config) baseURL() (*url.URL, error) {
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, fmt.Errorf("parse -url: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "wss" {
		return nil, fmt.Errorf("-url %q: scheme must be ws or wss", c.URL)
	}
	if !c.AllowRemote && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("-url %q: host must be loopback (127.0.0.0/8, ::1 or localhost); "+
			"pass -allow-remote to load a server elsewhere, and only one you own", c.URL)
	}
	return u, nil
}

// checkSourceIPs refuses source addresses that cannot work: anything but
// loopback without AllowRemote, and loopback addresses when the target
// host is elsewhere, since the kernel cannot route from them.
func (c *Config) checkSourceIPs(host string) error {
	remote := !isLoopbackHost(host)
	for _, a := range c.SourceIPs {
		switch {
		case !c.AllowRemote && !a.IsLoopback():
			return fmt.Errorf("-source-ips: %s is not loopback (pass -allow-remote to load a server elsewhere)", a)
		case remote && a.IsLoopback():
			return fmt.Errorf("-source-ips: loopback address %s cannot reach %s; give this machine's own addresses", a, host)
		}
	}
	return nil
}

// isLoopbackHost reports whether host is a loopback literal or localhost.
// Names other than localhost are refused rather than resolved, because a
// resolver could point them anywhere.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// clientURL is the dial URL for one client. For Proto hubbub it carries
// hubbub's room, name and format parameters; the other protocols get none
// (Centrifugo names the room in its subscribe command instead). A ticket,
// if not "", goes in ticket=.
func (c *Config) clientURL(base *url.URL, room, name, ticket string) string {
	u := *base
	q := u.Query()
	if c.Proto == protoHubbub {
		q.Set("room", room)
		q.Set("name", name)
		q.Set("format", c.Format)
	}
	if ticket != "" {
		q.Set("ticket", ticket)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// Shard selects every Count-th client index starting at Index, so several
// processes (each under its own open-file limit) can share one run.
type Shard struct {
	Index, Count int
}

// String formats s as i/n, the form parseShard reads.
func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// owns reports whether client index i belongs to this shard.
func (s Shard) owns(i int) bool { return i%s.Count == s.Index }

// parseShard reads "i/n" with 0 <= i < n.
func parseShard(s string) (Shard, error) {
	is, ns, ok := strings.Cut(s, "/")
	if !ok {
		return Shard{}, fmt.Errorf("shard %q: want i/n", s)
	}
	i, err1 := strconv.Atoi(strings.TrimSpace(is))
	n, err2 := strconv.Atoi(strings.TrimSpace(ns))
	if err1 != nil || err2 != nil {
		return Shard{}, fmt.Errorf("shard %q: want two integers i/n", s)
	}
	if n < 1 || i < 0 || i >= n {
		return Shard{}, fmt.Errorf("shard %q: want 0 <= i < n", s)
	}
	return Shard{Index: i, Count: n}, nil
}

// maxSourceIPs bounds -source-ips ranges; each address already allows about
// 28k connections per server port, so more than this is surely a typo.
const maxSourceIPs = 1024

// parseSourceIPs reads a comma-separated list of IPv4/IPv6 addresses and
// inclusive ranges ("127.0.0.1-127.0.0.8"). Whether they may be used is
// Config.checkSourceIPs's decision, as it depends on AllowRemote.
func parseSourceIPs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		from, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("source ip %q: %w", part, err)
		}
		to := from
		if isRange {
			if to, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil {
				return nil, fmt.Errorf("source ip range %q: %w", part, err)
			}
		}
		if from.Is4() != to.Is4() || to.Less(from) {
			return nil, fmt.Errorf("source ip range %q: end before start or mixed families", part)
		}
		for a := from; ; a = a.Next() {
			if len(out) == maxSourceIPs {
				return nil, fmt.Errorf("more than %d source ips", maxSourceIPs)
			}
			out = append(out, a)
			if a == to {
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no source ips")
	}
	return out, nil
}

// headerFlag collects repeated -header "Name: value" flags.
type headerFlag struct{ h http.Header }

// String implements flag.Value.
func (f *headerFlag) String() string {
	if f == nil || f.h == nil {
		return ""
	}
	var parts []string
	for k, vs := range f.h {
		for _, v := range vs {
			parts = append(parts, k+": "+v)
		}
	}
	return strings.Join(parts, ", ")
}

// Set implements flag.Value.
func (f *headerFlag) Set(s string) error {
	name, value, err := parseHeader(s)
	if err != nil {
		return err
	}
	if f.h == nil {
		f.h = http.Header{}
	}
	f.h.Add(name, value)
	return nil
}

// parseHeader splits "Name: value". The WebSocket handshake headers are
// refused because gorilla sets them itself and a duplicate breaks the dial.
func parseHeader(s string) (name, value string, err error) {
	name, value, ok := strings.Cut(s, ":")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return "", "", fmt.Errorf("header %q: want \"Name: value\"", s)
	}
	switch http.CanonicalHeaderKey(name) {
	case "Upgrade", "Connection", "Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Extensions":
		return "", "", fmt.Errorf("header %q is set by the WebSocket dialer", name)
	}
	return name, value, nil
}

// localTCPAddr is the dialer's local address for a source IP (port 0: the
// kernel picks a free ephemeral port on that address).
func localTCPAddr(a netip.Addr) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
}
