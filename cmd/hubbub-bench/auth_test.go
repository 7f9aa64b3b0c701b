package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// authServer is a test fixture for hubbub's login and jwt modes in front of
// a relay. In login mode (user set) POST /login issues single-use tickets
// and /ws admits a connection only with a ticket it issued and nobody used
// yet; in jwt mode (secret set) /ws admits only an HS256 token signed with
// the secret, with an exp, and a sub no earlier connection had.
type authServer struct {
	relay          *relay
	user, password string
	secret         []byte

	mu sync.Mutex
	// Guarded by mu.
	redeemed map[string]bool // ticket -> used
	subs     map[string]int  // token subjects admitted, and how often
	ttls     []time.Duration // exp minus now of each admitted token
	refused  []string        // why handshakes were refused
	logins   int             // tickets issued
}

// newAuthServer starts a on an httptest server and returns its ws URL.
func newAuthServer(t *testing.T, a *authServer) string {
	t.Helper()
	a.relay.clients = map[*relayClient]struct{}{}
	a.redeemed = map[string]bool{}
	a.subs = map[string]int{}
	ts := httptest.NewServer(a)
	t.Cleanup(ts.Close)
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/ws"
}

// ServeHTTP answers POST /login and admits or refuses /ws like hubbub does.
func (a *authServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/login" {
		a.serveLogin(w, r)
		return
	}
	if reason := a.admit(r.URL.Query().Get("ticket")); reason != "" {
		http.Error(w, reason, http.StatusUnauthorized)
		return
	}
	a.relay.ServeHTTP(w, r)
}

// serveLogin checks the credentials and issues a fresh ticket.
func (a *authServer) serveLogin(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&body) != nil {
		http.Error(w, `want a JSON body {"username":"…","password":"…"}`, http.StatusBadRequest)
		return
	}
	if a.user == "" || body.Username != a.user || body.Password != a.password {
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	ticket := rand.Text()
	a.mu.Lock()
	a.redeemed[ticket] = false
	a.logins++
	a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"ticket": ticket, "expires_in": 30})
}

// admit returns why cred does not let a connection in, or "".
func (a *authServer) admit(cred string) (reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	defer func() {
		if reason != "" {
			a.refused = append(a.refused, reason)
		}
	}()
	if a.secret == nil {
		used, issued := a.redeemed[cred]
		if !issued || used {
			return "ticket unknown, expired or already used: log in again with POST /login"
		}
		a.redeemed[cred] = true
		return ""
	}
	var claims jwt.RegisteredClaims
	_, err := jwt.ParseWithClaims(cred, &claims, func(*jwt.Token) (any, error) { return a.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), jwt.WithExpirationRequired())
	if err != nil {
		return "bad token: " + err.Error()
	}
	if a.subs[claims.Subject] > 0 {
		return "sub " + claims.Subject + " already connected"
	}
	a.subs[claims.Subject]++
	a.ttls = append(a.ttls, time.Until(claims.ExpiresAt.Time))
	return ""
}

// runJSON runs the tool through runMain with -json and decodes the report
// (nil if there was none).
func runJSON(t *testing.T, args []string) (code int, rep *Report, stderr string) {
	t.Helper()
	var out, errb strings.Builder
	code = runMain(context.Background(), append(args, "-json"), &out, &errb)
	t.Log("stderr:\n" + errb.String())
	if out.Len() > 0 {
		rep = &Report{}
		if err := json.Unmarshal([]byte(out.String()), rep); err != nil {
			t.Fatalf("decode report: %v\n%s", err, out.String())
		}
	}
	return code, rep, errb.String()
}

// TestLoginMode runs -login against the fixture: every connection, churn's
// redials included, must log in for its own ticket, because the fixture
// refuses a ticket used twice, as hubbub does. A single -ticket lets one
// connection in.
func TestLoginMode(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		singleUse  bool // get one ticket up front and pass it as -ticket
		want       int
		wantStderr []string
	}{
		{name: "a ticket per connection", args: []string{"-login", "bench:s3cr:et"}, want: exitPass},
		{name: "churn logs in again", args: []string{"-login", "bench:s3cr:et", "-scenario", "churn", "-senders", "2", "-churn-rate", "10"},
			want: exitPass},
		{name: "wrong password", args: []string{"-login", "bench:nope"}, want: exitFail,
			wantStderr: []string{"login as bench at http://", "HTTP 401 Unauthorized: wrong username or password", "no connection opened"}},
		{name: "one -ticket for all", singleUse: true, want: exitFail,
			wantStderr: []string{"-ticket: a hubbub login ticket lets one connection in", "already used", "7 failed dials"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &authServer{relay: &relay{flavour: formatJSON}, user: "bench", password: "s3cr:et"}
			wsURL := newAuthServer(t, srv)
			args := tt.args
			if tt.singleUse {
				a := newAuth(&Config{LoginUser: "bench", LoginPassword: "s3cr:et", DialTimeout: time.Second, DialConcurrency: 1}, mustParseURL(t, wsURL))
				ticket, err := a.login(context.Background())
				a.close()
				if err != nil {
					t.Fatalf("login: %v", err)
				}
				args = []string{"-ticket", ticket}
			}
			code, rep, stderr := runJSON(t, benchArgs(wsURL, args...))
			if code != tt.want {
				t.Errorf("exit code %d; want %d", code, tt.want)
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr lacks %q", want)
				}
			}
			if strings.Contains(stderr, "s3cr") {
				t.Errorf("stderr shows the password")
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if tt.want != exitPass {
				return
			}
			dials := rep.ConnOK + rep.Reconnects
			if int64(srv.logins) != dials || len(srv.redeemed) != int(dials) || len(srv.refused) != 0 {
				t.Errorf("%d logins, %d tickets, refused %q for %d connections; want one fresh ticket each",
					srv.logins, len(srv.redeemed), srv.refused, dials)
			}
			for ticket, used := range srv.redeemed {
				if !used {
					t.Errorf("ticket %s was fetched but never used", ticket)
				}
			}
			if strings.Contains(tt.name, "churn") && rep.Reconnects == 0 {
				t.Errorf("churn made no reconnects")
			}
		})
	}
}

// TestJWTMode runs -jwt-secret against the fixture, which verifies every
// token with the same secret and refuses a sub it has seen before.
func TestJWTMode(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{name: "distinct subs", args: []string{"-jwt-secret", secret}, want: exitPass},
		{name: "churn mints new subs", args: []string{"-jwt-secret", secret, "-scenario", "churn", "-senders", "2", "-churn-rate", "10"},
			want: exitPass},
		{name: "wrong secret", args: []string{"-jwt-secret", strings.ToUpper(secret)}, want: exitFail,
			wantStderr: "bad token: token signature is invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &authServer{relay: &relay{flavour: formatJSON}, secret: []byte(secret)}
			code, rep, stderr := runJSON(t, benchArgs(newAuthServer(t, srv), tt.args...))
			if code != tt.want {
				t.Errorf("exit code %d; want %d", code, tt.want)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr lacks %q", tt.wantStderr)
			}
			srv.mu.Lock()
			defer srv.mu.Unlock()
			if tt.want != exitPass {
				return
			}
			if dials := rep.ConnOK + rep.Reconnects; len(srv.subs) != int(dials) || len(srv.refused) != 0 {
				t.Errorf("%d distinct subs, refused %q, for %d connections; want one sub each", len(srv.subs), srv.refused, dials)
			}
			for sub := range srv.subs {
				if !validTestName(sub) {
					t.Errorf("sub %q is not a valid hubbub name", sub)
				}
			}
			for _, ttl := range srv.ttls {
				if ttl < jwtTTL-time.Minute || ttl > jwtTTL {
					t.Errorf("token expires in %v; want about %v", ttl, jwtTTL)
				}
			}
		})
	}
}

// validTestName mirrors hubbub's rule for user names: 1 to 32 bytes of
// [A-Za-z0-9_-].
func validTestName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// mustParseURL parses a URL the test built itself.
func mustParseURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
