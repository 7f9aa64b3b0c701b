package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// jwtTTL is the lifetime of a minted token. hubbub checks a token only at
// the handshake, so it must outlive just the dial; minutes rather than
// seconds leave room for clock skew with a server on another machine.
const jwtTTL = 5 * time.Minute

// loginBodyLimit bounds the /login answer the tool reads; hubbub's is
// under 100 bytes.
const loginBodyLimit = 4 << 10

// auth gets the credential each connection puts in ticket=: the fixed
// -ticket, a fresh single-use ticket from POST /login, or a JWT minted
// for the connection's name. Its fields are set in newAuth and never
// change, so credential is safe from any goroutine.
type auth struct {
	ticket string // -ticket, the same for every connection

	user, password string // -login
	loginURL       string
	client         *http.Client // nil unless -login

	secret []byte // -jwt-secret
}

// newAuth prepares the credentials of cfg for the target base. The login
// endpoint is /login on the target's host, over http for ws and https for
// wss, as hubbub serves it.
func newAuth(cfg *Config, base *url.URL) *auth {
	a := &auth{ticket: cfg.Ticket, user: cfg.LoginUser, password: cfg.LoginPassword}
	if cfg.JWTSecret != "" {
		a.secret = []byte(cfg.JWTSecret)
	}
	if a.user != "" {
		u := url.URL{Scheme: "http", Host: base.Host, Path: "/login"}
		if base.Scheme == "wss" {
			u.Scheme = "https"
		}
		a.loginURL = u.String()
		nd := &net.Dialer{Timeout: cfg.DialTimeout}
		a.client = &http.Client{
			Timeout: cfg.DialTimeout,
			Transport: &http.Transport{
				// Proxy stays nil, as for the WebSocket dials.
				DialContext:         nd.DialContext,
				TLSHandshakeTimeout: cfg.DialTimeout,
				// Keep one idle connection per concurrent dial, so logins
				// reuse connections instead of leaving a socket in
				// TIME_WAIT per client.
				MaxIdleConnsPerHost: cfg.DialConcurrency,
				IdleConnTimeout:     30 * time.Second,
			},
		}
	}
	return a
}

// credential returns what the connection called name puts in ticket=, or
// "" for none.
func (a *auth) credential(ctx context.Context, name string) (string, error) {
	switch {
	case a.client != nil:
		return a.login(ctx)
	case a.secret != nil:
		return a.mint(name, time.Now())
	}
	return a.ticket, nil
}

// login asks the server for one single-use ticket. hubbub answers 200
// {"ticket":"…","expires_in":30}, and a plain-text reason otherwise.
func (a *auth) login(ctx context.Context) (string, error) {
	body, err := json.Marshal(struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}{a.user, a.password})
	if err != nil {
		return "", fmt.Errorf("encode login: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.loginURL, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("login at %s: %w", a.loginURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("login as %s: %w", a.user, err)
	}
	defer resp.Body.Close()
	// Read to the end so the connection can carry the next login.
	defer io.Copy(io.Discard, io.LimitReader(resp.Body, loginBodyLimit))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("login as %s at %s: HTTP %s%s", a.user, a.loginURL, resp.Status, bodyHint(resp.Body))
	}
	var out struct {
		Ticket string `json:"ticket"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, loginBodyLimit)).Decode(&out); err != nil || out.Ticket == "" {
		return "", fmt.Errorf(`login as %s at %s: want {"ticket":"…"} in the answer, got none (%v)`, a.user, a.loginURL, err)
	}
	return out.Ticket, nil
}

// mint signs an HS256 token whose subject is the connection's name, which
// hubbub takes as the user name; names are unique per connection, so no
// two clients share a user.
func (a *auth) mint(name string, now time.Time) (string, error) {
	claims := jwt.RegisteredClaims{
		Subject:   name,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(jwtTTL)),
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(a.secret)
	if err != nil {
		return "", fmt.Errorf("sign token for %s: %w", name, err)
	}
	return tok, nil
}

// close drops the idle login connections, so that none of their
// goroutines outlives the run.
func (a *auth) close() {
	if a.client != nil {
		a.client.CloseIdleConnections()
	}
}
