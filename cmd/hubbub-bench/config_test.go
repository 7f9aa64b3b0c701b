package main

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseSourceIPs(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "127.0.0.1", want: []string{"127.0.0.1"}},
		{in: "127.0.0.1-127.0.0.3", want: []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}},
		{in: " 127.0.0.9 , 127.0.0.1-127.0.0.2 ", want: []string{"127.0.0.9", "127.0.0.1", "127.0.0.2"}},
		{in: "127.0.0.255-127.0.1.1", want: []string{"127.0.0.255", "127.0.1.0", "127.0.1.1"}},
		{in: "::1", want: []string{"::1"}},
		{in: "127.0.0.5-127.0.0.5", want: []string{"127.0.0.5"}},
		{in: "127.0.0.3-127.0.0.1", wantErr: "end before start"},
		{in: "127.0.0.1-::1", wantErr: "mixed"},
		// Whether an address may be used is checkSourceIPs's decision.
		{in: "10.0.0.1", want: []string{"10.0.0.1"}},
		{in: "127.255.255.255-128.0.0.1", want: []string{"127.255.255.255", "128.0.0.0", "128.0.0.1"}},
		{in: "127.0.0.0-127.1.0.0", wantErr: "more than"},
		{in: "localhost", wantErr: "source ip"},
		{in: "127.0.0.1-", wantErr: "range"},
		{in: ",", wantErr: "no source ips"},
	}
	for _, tt := range tests {
		got, err := parseSourceIPs(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseSourceIPs(%q) error = %v; want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseSourceIPs(%q) error = %v", tt.in, err)
			continue
		}
		var gotS []string
		for _, a := range got {
			gotS = append(gotS, a.String())
		}
		if !slices.Equal(gotS, tt.want) {
			t.Errorf("parseSourceIPs(%q) = %v; want %v", tt.in, gotS, tt.want)
		}
	}
}

func TestParseShard(t *testing.T) {
	tests := []struct {
		in   string
		want Shard
		ok   bool
	}{
		{"0/1", Shard{0, 1}, true},
		{"3/4", Shard{3, 4}, true},
		{" 1 / 2 ", Shard{1, 2}, true},
		{"4/4", Shard{}, false},
		{"-1/4", Shard{}, false},
		{"0/0", Shard{}, false},
		{"1", Shard{}, false},
		{"a/b", Shard{}, false},
		{"1/2/3", Shard{}, false},
	}
	for _, tt := range tests {
		got, err := parseShard(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseShard(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// TestShardPartition checks that shards split the index space exactly: every
// client index belongs to one shard, and shard sizes differ by at most one.
func TestShardPartition(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7} {
		const clients = 100
		sizes := make([]int, n)
		for i := range clients {
			owners := 0
			for s := range n {
				if (Shard{s, n}).owns(i) {
					owners++
					sizes[s]++
				}
			}
			if owners != 1 {
				t.Errorf("n=%d: index %d owned by %d shards; want 1", n, i, owners)
			}
		}
		if slices.Max(sizes)-slices.Min(sizes) > 1 {
			t.Errorf("n=%d: shard sizes %v; want balanced", n, sizes)
		}
	}
}

func TestPlanSlots(t *testing.T) {
	tests := []struct {
		name                   string
		scenario               string
		clients, rooms, send   int
		shard                  Shard
		wantSlots, wantSenders int
		wantRooms              int
	}{
		{"fanout", scenarioFanout, 10, 0, 3, Shard{0, 1}, 10, 3, 1},
		{"fanout shard", scenarioFanout, 10, 0, 3, Shard{1, 2}, 5, 1, 1},
		{"rooms", scenarioRooms, 20, 4, 2, Shard{0, 1}, 20, 8, 4},
		{"rooms default", scenarioRooms, 20, 0, 1, Shard{0, 1}, 20, 10, 10},
		{"idle", scenarioIdle, 7, 0, 5, Shard{0, 1}, 7, 0, 1},
		{"churn", scenarioChurn, 9, 0, 2, Shard{0, 1}, 9, 2, 1},
	}
	for _, tt := range tests {
		cfg := defaultConfig()
		cfg.Scenario, cfg.Clients, cfg.Rooms, cfg.Senders, cfg.Shard = tt.scenario, tt.clients, tt.rooms, tt.send, tt.shard
		if err := cfg.normalize(); err != nil {
			t.Errorf("%s: normalize: %v", tt.name, err)
			continue
		}
		rooms, slots := planSlots(&cfg)
		senders := 0
		perRoom := map[*room]int{}
		for _, s := range slots {
			if s.sender {
				senders++
				perRoom[s.room]++
			}
			if !cfg.Shard.owns(s.idx) {
				t.Errorf("%s: slot %d not owned by shard %v", tt.name, s.idx, cfg.Shard)
			}
		}
		if len(rooms) != tt.wantRooms || len(slots) != tt.wantSlots || senders != tt.wantSenders {
			t.Errorf("%s: %d rooms, %d slots, %d senders; want %d, %d, %d",
				tt.name, len(rooms), len(slots), senders, tt.wantRooms, tt.wantSlots, tt.wantSenders)
		}
		if tt.scenario == scenarioRooms {
			for r, n := range perRoom {
				if n != tt.send {
					t.Errorf("%s: room %s has %d senders; want %d", tt.name, r.name, n, tt.send)
				}
			}
		}
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"defaults", func(*Config) {}, ""},
		{"json max size", func(c *Config) { c.Size = maxSize(formatJSON) }, ""},
		{"json too big", func(c *Config) { c.Size = maxSize(formatJSON) + 1 }, "-size"},
		{"text 512", func(c *Config) { c.Format = formatText; c.Size = 512 }, ""},
		{"text 513", func(c *Config) { c.Format = formatText; c.Size = 513 }, "-size"},
		{"raw forces text", func(c *Config) { c.Raw = true; c.Size = 512 }, ""},
		{"too small", func(c *Config) { c.Size = minSize - 1 }, "-size"},
		{"localhost", func(c *Config) { c.URL = "ws://localhost:1/ws" }, ""},
		{"ipv6 loopback", func(c *Config) { c.URL = "ws://[::1]:1/ws" }, ""},
		{"other host", func(c *Config) { c.URL = "ws://example.com/ws" }, "loopback"},
		{"private ip", func(c *Config) { c.URL = "ws://192.168.0.2:8080/ws" }, "-allow-remote"},
		{"private ip allowed", func(c *Config) { c.URL = "ws://192.168.0.2:8080/ws"; c.AllowRemote = true }, ""},
		{"name allowed", func(c *Config) { c.URL = "wss://bench.example.com/ws"; c.AllowRemote = true }, ""},
		{"remote source ip", func(c *Config) { c.SourceIPs = addrs("10.0.0.1") }, "not loopback"},
		{"remote source ip allowed", func(c *Config) {
			c.URL, c.SourceIPs, c.AllowRemote = "ws://192.168.0.2:8080/ws", addrs("192.168.0.7"), true
		}, ""},
		{"loopback source to remote", func(c *Config) {
			c.URL, c.SourceIPs, c.AllowRemote = "ws://192.168.0.2:8080/ws", addrs("127.0.0.1"), true
		}, "cannot reach"},
		{"http scheme", func(c *Config) { c.URL = "http://127.0.0.1/ws" }, "scheme"},
		{"too many senders", func(c *Config) { c.Clients = 5; c.Senders = 6 }, "-senders"},
		{"rooms senders per room", func(c *Config) { c.Scenario = scenarioRooms; c.Clients = 20; c.Rooms = 10; c.Senders = 3 }, "-senders"},
		{"more rooms than clients", func(c *Config) { c.Scenario = scenarioRooms; c.Clients = 5; c.Rooms = 6 }, "-rooms"},
		{"zero rate", func(c *Config) { c.Rate = 0 }, "-rate"},
		{"idle needs no senders", func(c *Config) { c.Scenario = scenarioIdle; c.Senders = 0; c.Rate = 0 }, ""},
		{"more shards than clients", func(c *Config) { c.Clients = 2; c.Senders = 1; c.Shard = Shard{0, 3} }, "more shards"},
		{"bad format", func(c *Config) { c.Format = "xml" }, "format"},
		{"centrifugo ignores format", func(c *Config) { c.Proto = protoCentrifugo; c.Format = "xml" }, ""},
		{"centrifugo max size", func(c *Config) { c.Proto = protoCentrifugo; c.Size = maxSize(formatCentrifugo) }, ""},
		{"centrifugo too big", func(c *Config) { c.Proto = protoCentrifugo; c.Size = maxSize(formatCentrifugo) + 1 }, "-size"},
		{"raw and proto raw", func(c *Config) { c.Proto = protoRaw; c.Raw = true }, ""},
		{"raw conflicts with centrifugo", func(c *Config) { c.Proto = protoCentrifugo; c.Raw = true }, "conflicts"},
		{"unknown proto", func(c *Config) { c.Proto = "mqtt" }, "unknown protocol"},
		{"login", func(c *Config) { c.LoginUser, c.LoginPassword = "u", "p" }, ""},
		{"login without password", func(c *Config) { c.LoginUser = "u" }, "both a user and a password"},
		{"ticket with raw", func(c *Config) { c.Ticket, c.Proto = "t", protoRaw }, ""},
		{"jwt with raw", func(c *Config) { c.JWTSecret, c.Proto = "k", protoRaw }, "hubbub's auth"},
		{"thresholds", func(c *Config) { c.Thresholds = Thresholds{MinDelivery: 1, MaxP99: time.Second} }, ""},
		{"min delivery above 1", func(c *Config) { c.Thresholds.MinDelivery = 1.01 }, "-min-delivery"},
		{"negative p99", func(c *Config) { c.Thresholds.MaxP99 = -time.Millisecond }, "-max-p99"},
		{"idle p99", func(c *Config) { c.Scenario = scenarioIdle; c.Thresholds.MaxP99 = time.Second }, "idle"},
		{"idle conn limit", func(c *Config) { c.Scenario = scenarioIdle; c.Thresholds.MaxConnFailures = FailureLimit{N: 3} }, ""},
	}
	for _, tt := range tests {
		cfg := defaultConfig()
		tt.mod(&cfg)
		err := cfg.normalize()
		if tt.wantErr == "" && err != nil {
			t.Errorf("%s: normalize() = %v; want nil", tt.name, err)
		}
		if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%s: normalize() = %v; want error containing %q", tt.name, err, tt.wantErr)
		}
	}
}

// addrs parses addresses for test tables.
func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestClientURL(t *testing.T) {
	tests := []struct {
		proto  string
		raw    bool
		ticket string
		base   string
		want   url.Values
	}{
		{protoHubbub, false, "", "ws://127.0.0.1:8080/ws", url.Values{"room": {"r1"}, "name": {"n1"}, "format": {"json"}}},
		{protoHubbub, false, "t0k", "ws://127.0.0.1:8080/ws?x=1", url.Values{"room": {"r1"}, "name": {"n1"}, "format": {"json"}, "ticket": {"t0k"}, "x": {"1"}}},
		{protoHubbub, true, "", "ws://127.0.0.1:8080/ws", url.Values{}},
		{protoHubbub, true, "a b", "ws://127.0.0.1:8080/ws", url.Values{"ticket": {"a b"}}},
		{protoRaw, false, "", "ws://127.0.0.1:8080/ws", url.Values{}},
		{protoCentrifugo, false, "", "ws://127.0.0.1:8080/ws", url.Values{}},
	}
	for _, tt := range tests {
		cfg := defaultConfig()
		cfg.Proto, cfg.Raw, cfg.Ticket, cfg.URL = tt.proto, tt.raw, tt.ticket, tt.base
		if err := cfg.normalize(); err != nil {
			t.Fatal(err)
		}
		base, err := cfg.baseURL()
		if err != nil {
			t.Fatal(err)
		}
		got, err := url.Parse(cfg.clientURL(base, "r1", "n1", tt.ticket))
		if err != nil {
			t.Fatal(err)
		}
		if got.Query().Encode() != tt.want.Encode() || got.Path != "/ws" || got.Host != "127.0.0.1:8080" {
			t.Errorf("clientURL(proto=%s, raw=%v, ticket=%q) = %s; want query %s", tt.proto, tt.raw, tt.ticket, got, tt.want.Encode())
		}
	}
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		in, name, value string
		ok              bool
	}{
		{"Authorization: Bearer X", "Authorization", "Bearer X", true},
		{"X-A:b:c", "X-A", "b:c", true},
		{"  Cookie :  s=1 ", "Cookie", "s=1", true},
		{"NoColon", "", "", false},
		{": v", "", "", false},
		{"Bad Name: v", "", "", false},
		{"sec-websocket-key: x", "", "", false},
	}
	for _, tt := range tests {
		name, value, err := parseHeader(tt.in)
		if (err == nil) != tt.ok || name != tt.name || value != tt.value {
			t.Errorf("parseHeader(%q) = %q, %q, %v; want %q, %q, ok %v", tt.in, name, value, err, tt.name, tt.value, tt.ok)
		}
	}
	var f headerFlag
	for _, s := range []string{"A: 1", "A: 2"} {
		if err := f.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.h.Values("A"); !slices.Equal(got, []string{"1", "2"}) {
		t.Errorf("repeated -header A = %v; want [1 2]", got)
	}
}

func TestLocalTCPAddr(t *testing.T) {
	a := localTCPAddr(netip.MustParseAddr("127.0.0.7"))
	if a.String() != "127.0.0.7:0" {
		t.Errorf("localTCPAddr = %s; want 127.0.0.7:0", a)
	}
}

// TestReadBufferDefault: idle runs keep the small buffer (memory per held
// connection), the others a large one (fewer read syscalls per frame), and
// an explicit -read-buffer wins.
func TestReadBufferDefault(t *testing.T) {
	tests := []struct {
		scenario string
		set      int
		want     int
	}{
		{scenarioIdle, 0, 512},
		{scenarioFanout, 0, 16384},
		{scenarioRooms, 0, 16384},
		{scenarioChurn, 0, 16384},
		{scenarioFanout, 1024, 1024},
		{scenarioIdle, 4096, 4096},
	}
	for _, tt := range tests {
		cfg := defaultConfig()
		cfg.Scenario, cfg.ReadBuffer = tt.scenario, tt.set
		if err := cfg.normalize(); err != nil {
			t.Fatalf("%s: normalize: %v", tt.scenario, err)
		}
		if cfg.ReadBuffer != tt.want {
			t.Errorf("%s with %d: read buffer %d; want %d", tt.scenario, tt.set, cfg.ReadBuffer, tt.want)
		}
	}
}
