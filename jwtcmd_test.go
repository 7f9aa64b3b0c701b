package main

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestJWTCommandConnects mints a token with hubbub jwt, the secret coming
// from where the server would read it, and connects with it to a real
// jwt-mode server with that secret.
func TestJWTCommandConnects(t *testing.T) {
	secret := strings.Repeat("s", 32)
	other := strings.Repeat("o", 32)
	tests := []struct {
		name string
		sub  string
		env  map[string]string
		args []string
	}{
		{"HUBBUB_JWT_SECRET", "alice", map[string]string{"HUBBUB_JWT_SECRET": secret}, nil},
		{"-jwt-secret", "bob", nil, []string{"-jwt-secret", secret}},
		{"-jwt-secret beats HUBBUB_JWT_SECRET", "carol", map[string]string{"HUBBUB_JWT_SECRET": other}, []string{"-jwt-secret=" + secret}},
	}
	s := newTestServer(t, Config{Auth: authJWT, JWTSecret: secret})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"jwt", "-sub", tt.sub, "-ttl", "10m"}, tt.args...)
			stdout, stderr, code := runCmd(t, tt.env, args...)
			if code != 0 {
				t.Fatalf("hubbub jwt exited %d: %s", code, stderr)
			}
			tok, rest, _ := strings.Cut(stdout, "\n")
			if rest != "" || strings.Count(tok, ".") != 2 {
				t.Fatalf("hubbub jwt printed %q; want one token and nothing else", stdout)
			}
			var claims jwt.RegisteredClaims
			if _, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil }); err != nil {
				t.Fatalf("token does not verify with the server's secret: %v", err)
			}
			if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life != 10*time.Minute {
				t.Errorf("token lives %v; want the -ttl, 10m", life)
			}
			if _, name := s.joinedAs(t, nil, "ticket", tok); name != tt.sub {
				t.Errorf("connected with the token as %q; want %s", name, tt.sub)
			}
		})
	}
}

// TestJWTCommandRole: -role puts a role claim in the token, which the
// server reports in room_changed.
func TestJWTCommandRole(t *testing.T) {
	secret := strings.Repeat("s", 32)
	s := newTestServer(t, Config{Auth: authJWT, JWTSecret: secret})
	stdout, stderr, code := runCmd(t, map[string]string{"HUBBUB_JWT_SECRET": secret}, "jwt", "-sub", "mo", "-role", "moderator")
	if code != 0 {
		t.Fatalf("hubbub jwt -role exited %d: %s", code, stderr)
	}
	p := s.dial(t, "ticket", strings.TrimSpace(stdout))
	var rp roomPayload
	p.skipUntil("room_changed").decode(t, &rp)
	if rp.Name != "mo" || rp.Role != "moderator" {
		t.Errorf("room_changed says %s with role %q; want mo, moderator", rp.Name, rp.Role)
	}
}

func TestJWTCommandErrors(t *testing.T) {
	secret := map[string]string{"HUBBUB_JWT_SECRET": strings.Repeat("s", 32)}
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no sub", secret, nil, "-sub NAME is required"},
		{"bad sub", secret, []string{"-sub", "a b"}, `-sub "a b": `},
		{"zero ttl", secret, []string{"-sub", "alice", "-ttl", "0s"}, "-ttl 0s: want a positive duration"},
		{"no secret", nil, []string{"-sub", "alice"}, "no usable secret: set HUBBUB_JWT_SECRET"},
		{"short secret", map[string]string{"HUBBUB_JWT_SECRET": "short"}, []string{"-sub", "alice"}, "at least 32 bytes; got 5"},
		{"stray argument", secret, []string{"-sub", "alice", "bob"}, `unexpected argument "bob"`},
		{"bad role", secret, []string{"-sub", "alice", "-role", "owner"}, `-role: role "owner": want admin or moderator`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCmd(t, tt.env, append([]string{"jwt"}, tt.args...)...)
			if code != 1 || !strings.Contains(stderr, tt.want) || stdout != "" {
				t.Errorf("hubbub jwt %v = exit %d, stdout %q, stderr %q; want 1, nothing, and %q", tt.args, code, stdout, stderr, tt.want)
			}
		})
	}
}
