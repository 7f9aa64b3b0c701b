package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzCredentials feeds arbitrary Authorization headers, ticket query
// values and tokens to the code that turns them into an identity. Nothing
// may panic, and anything accepted must really be valid: a JWT only if it
// is HS256 and carries a correct HMAC of its own header and claims under
// the server's secret, a ticket only if it is the one the store issued.
func FuzzCredentials(f *testing.F) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	good, err := jwt.NewWithClaims(jwt.SigningMethodHS256,
		jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	if err != nil {
		f.Fatal(err)
	}
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone,
		jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	for _, s := range []struct{ header, ticket, token string }{
		{"Bearer " + good, "", good},
		{"", "abc", none},
		{"bearer   x  ", "", "a.b.c"},
		{"Basic dXNlcjpwYXNz", "t", "eyJhbGciOiJIUzI1NiJ9.e30."},
		{"Bearer", "%00", strings.Repeat(".", 40)},
	} {
		f.Add(s.header, s.ticket, s.token)
	}
	a := &authenticator{jwtKey: secret}
	f.Fuzz(func(t *testing.T, header, ticket, token string) {
		r := httptest.NewRequest(http.MethodGet, "/ws", nil)
		q := r.URL.Query()
		q.Set("ticket", ticket)
		r.URL.RawQuery = q.Encode()
		if header != "" {
			r.Header.Set("Authorization", header)
		}
		got, err := credential(r)
		if err == nil && r.Header.Get("Authorization") != "" {
			if got == "" || got != strings.TrimSpace(got) {
				t.Fatalf("header %q accepted as token %q", header, got)
			}
		}

		sub, rl, err := a.verifyJWT(token, time.Now())
		if err == nil {
			if !validName(sub) || !signedHS256(token, secret) || rl > roleAdmin {
				t.Fatalf("accepted token %q as %q without a valid HS256 signature", token, sub)
			}
		}

		store := newTicketStore(time.Minute)
		issued, err := store.issue("alice", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if user, ok := store.redeem(token, time.Now()); ok && (token != issued || user != "alice") {
			t.Fatalf("redeemed %q as %q; only %q was issued", token, user, issued)
		}
	})
}

// signedHS256 reports whether tok's header names HS256 and its signature is
// the HMAC-SHA256 of its first two parts under secret.
func signedHS256(tok string, secret []byte) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &h) != nil || h.Alg != "HS256" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(parts[0] + "." + parts[1]))
	return hmac.Equal(sig, m.Sum(nil))
}

// TestUpgradeFloodOverMaxConns opens many connections at once against a
// small -max-conns: exactly the cap gets in, every other attempt gets 503
// before the upgrade, and once the winners leave the slots are free again.
func TestUpgradeFloodOverMaxConns(t *testing.T) {
	const limit, attempts = 10, 100
	s := newTestServer(t, Config{MaxConns: limit})
	var (
		mu      sync.Mutex
		peers   []*peer
		refused int
		other   []string
		wg      sync.WaitGroup
	)
	for range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, resp, err := s.tryDial()
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				peers = append(peers, p)
			case resp != nil && resp.StatusCode == http.StatusServiceUnavailable:
				refused++
			default:
				other = append(other, err.Error())
			}
		}()
	}
	wg.Wait()
	if len(peers) != limit || refused != attempts-limit || len(other) != 0 {
		t.Errorf("%d connected, %d refused with 503, other failures %q; want %d, %d, none",
			len(peers), refused, other, limit, attempts-limit)
	}
	for _, p := range peers {
		p.conn.Close()
	}
	// Slots come back once the hub has let the closed clients go.
	deadline := time.Now().Add(10 * time.Second)
	for s.conns.open() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still taken after every client left", s.conns.open())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.dial(t).skipUntil("room_changed")
}
