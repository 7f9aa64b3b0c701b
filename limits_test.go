package main

import (
	"net/http"
	"testing"
	"time"
)

func TestMaxConns(t *testing.T) {
	s := newTestServer(t, Config{MaxConns: 2})
	a, _ := s.joined(t, "name", "a")
	s.joined(t, "name", "b")
	s.expectRefused(t, nil, http.StatusServiceUnavailable, "server full", "name", "c")
	a.conn.Close()
	// The slot comes back once a's connection has ended.
	for deadline := time.Now().Add(5 * time.Second); s.conns.open() != 1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections counted after one of two closed; want 1", s.conns.open())
		}
	}
	s.joined(t, "name", "c")
}

func TestMaxConnsPerIP(t *testing.T) {
	s := newTestServer(t, Config{MaxConnsPerIP: 1})
	s.joined(t, "name", "a")
	s.expectRefused(t, nil, http.StatusTooManyRequests, "too many connections from your address", "name", "b")
	// Refusals hold no slot.
	if n := s.conns.open(); n != 1 {
		t.Errorf("%d connections counted; want 1", n)
	}
}

// TestRefusedHandshakesFreeTheirSlot: a connection refused after it took
// a slot (here: bad ticket) gives the slot back.
func TestRefusedHandshakesFreeTheirSlot(t *testing.T) {
	s := newTestServer(t, Config{MaxConns: 1, Auth: authLogin, UsersFile: writeUsers(t, "alice", "x")})
	for range 3 {
		s.expectRefused(t, nil, http.StatusUnauthorized, "unknown", "ticket", "bad")
	}
	s.joinedAs(t, nil, "ticket", s.login(t, "alice", "x"))
}

func TestConnLimiter(t *testing.T) {
	l := newConnLimiter(3, 2)
	steps := []struct {
		key  string
		want int
	}{{"a", 0}, {"a", 0}, {"a", 429}, {"b", 0}, {"c", 503}}
	var releases []func()
	for _, s := range steps {
		status, release := l.acquire(s.key)
		if status != s.want {
			t.Fatalf("acquire(%s) = %d; want %d", s.key, status, s.want)
		}
		if release != nil {
			releases = append(releases, release)
		}
	}
	releases[0]()
	releases[0]() // a second call must not free a second slot
	if n := l.open(); n != 2 {
		t.Errorf("open = %d after one release; want 2", n)
	}
	for _, r := range releases[1:] {
		r()
	}
	if l.open() != 0 || len(l.perIP) != 0 {
		t.Errorf("after every release: open %d, %d addresses kept; want 0, 0", l.open(), len(l.perIP))
	}
}

func TestIPKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1:5000", "127.0.0.1"},
		{"[::ffff:10.0.0.1]:80", "10.0.0.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"garbage", "garbage"},
	}
	for _, tt := range tests {
		if got := ipKey(tt.in); got != tt.want {
			t.Errorf("ipKey(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestIPLimiter(t *testing.T) {
	l := newIPLimiter(time.Second, 2)
	now := testTime
	if w := l.blocked("a", now); w != 0 {
		t.Fatalf("fresh address blocked for %v", w)
	}
	l.fail("a", now)
	l.fail("a", now)
	if w := l.blocked("a", now); w <= 0 || w > time.Second {
		t.Errorf("after 2 failures: blocked %v; want (0, 1s]", w)
	}
	if w := l.blocked("b", now); w != 0 {
		t.Errorf("other address blocked for %v", w)
	}
	if w := l.blocked("a", now.Add(time.Second)); w != 0 {
		t.Errorf("after a refill: blocked %v; want 0", w)
	}
	l.sweep(now.Add(time.Second))
	if l.len() != 1 {
		t.Errorf("sweep of a half-empty bucket left %d; want 1", l.len())
	}
	l.sweep(now.Add(2 * time.Second))
	if l.len() != 0 {
		t.Errorf("sweep of a refilled bucket left %d; want 0", l.len())
	}
}
