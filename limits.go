package main

import (
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ipKey returns the client address that per-address limits count by: the
// IP of remoteAddr, or for IPv6 its /64 network, since one host usually
// holds a whole /64 and could otherwise dodge the limit by switching
// addresses. hubbub does not trust X-Forwarded-For, so behind a proxy every
// client counts as the proxy.
func ipKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64) // cannot fail for a /64 of an IPv6 address
		return p.String()
	}
	return ip.String()
}

// connLimiter counts open WebSocket connections, in total and per client
// address, for -max-conns and -max-conns-per-ip. It is deliberately not hub
// state: serveWs asks it before the upgrade, from the HTTP goroutine, and
// the client gives the slot back when its connection is over. Safe for
// concurrent use.
type connLimiter struct {
	maxTotal, maxPerIP int // 0: no limit

	mu    sync.Mutex // guards total and perIP
	total int
	perIP map[string]int // only addresses with open connections
}

// newConnLimiter returns a limiter; a zero maximum means no limit.
func newConnLimiter(maxTotal, maxPerIP int) *connLimiter {
	return &connLimiter{maxTotal: maxTotal, maxPerIP: maxPerIP, perIP: make(map[string]int)}
}

// acquire takes a slot for a connection from key. It returns 0 and a
// release function to call exactly once when the connection is gone, or
// the HTTP status to refuse with: 503 when the server is full, 429 when
// this address has too many connections.
func (l *connLimiter) acquire(key string) (status int, release func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal > 0 && l.total >= l.maxTotal {
		return http.StatusServiceUnavailable, nil
	}
	if l.maxPerIP > 0 && l.perIP[key] >= l.maxPerIP {
		return http.StatusTooManyRequests, nil
	}
	l.total++
	l.perIP[key]++
	var once sync.Once
	return 0, func() { once.Do(func() { l.release(key) }) }
}

// release gives back a slot taken by acquire.
func (l *connLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perIP[key]--; l.perIP[key] <= 0 {
		delete(l.perIP, key)
	}
}

// open returns the number of connections holding a slot.
func (l *connLimiter) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// ipLimiter is a token bucket per client address, used for failed logins:
// each failure takes a token, and an address with none left is refused
// until one refills. Idle addresses are forgotten by sweep, so the map
// holds only addresses that failed recently. Safe for concurrent use.
type ipLimiter struct {
	every time.Duration // one token back per every
	burst int

	mu      sync.Mutex // guards buckets
	buckets map[string]*rate.Limiter
}

// newIPLimiter returns a limiter allowing burst events per address, then
// one per every.
func newIPLimiter(every time.Duration, burst int) *ipLimiter {
	return &ipLimiter{every: every, burst: burst, buckets: make(map[string]*rate.Limiter)}
}

// blocked returns how long key must wait before its next attempt, or 0 if
// it may try now. It takes no token: only failures do.
func (l *ipLimiter) blocked(key string, now time.Time) time.Duration {
	l.mu.Lock()
	lim := l.buckets[key]
	l.mu.Unlock()
	if lim == nil {
		return 0
	}
	if missing := 1 - lim.TokensAt(now); missing > 0 {
		return time.Duration(missing * float64(l.every))
	}
	return 0
}

// fail takes a token from key's bucket.
func (l *ipLimiter) fail(key string, now time.Time) {
	l.mu.Lock()
	lim := l.buckets[key]
	if lim == nil {
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.buckets[key] = lim
	}
	l.mu.Unlock()
	lim.AllowN(now, 1)
}

// sweep forgets addresses whose bucket has refilled: remembering them
// would change nothing.
func (l *ipLimiter) sweep(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, lim := range l.buckets {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, key)
		}
	}
}

// len returns the number of addresses remembered.
func (l *ipLimiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}
