package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
)

// init starts os/signal's watcher goroutine before TestMain takes its
// goroutine count. The package starts it on first use and never stops it,
// so without this the real SIGHUP in TestReloadUsersOnHangup would look
// like a leak.
func init() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGHUP)
	signal.Stop(c)
}

// writeUsers writes a users file for name, password pairs, hashed at the
// minimum cost so tests stay fast, and returns its path. A name written
// "name:role" gives the user that role.
func writeUsers(t testing.TB, pairs ...string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# test users\n\n")
	for i := 0; i+1 < len(pairs); i += 2 {
		hash, err := bcrypt.GenerateFromPassword([]byte(pairs[i+1]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		name, rl, hasRole := strings.Cut(pairs[i], ":")
		b.WriteString(name + ":" + string(hash))
		if hasRole {
			b.WriteString(":" + rl)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// post sends body to path with method and returns the status and body.
func (s *testServer) post(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.ts.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// login logs in and returns the ticket, failing the test otherwise.
func (s *testServer) login(t testing.TB, user, password string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"username": user, "password": password})
	code, resp := s.post(t, "POST", "/login", string(body))
	if code != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, code, resp)
	}
	var r struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil || r.Ticket == "" || r.ExpiresIn <= 0 {
		t.Fatalf("login reply %s: %v", resp, err)
	}
	return r.Ticket
}

// dialHeader connects to /ws with query kv and request header h.
func (s *testServer) dialHeader(h http.Header, kv ...string) (*peer, *http.Response, error) {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	conn, resp, err := websocket.DefaultDialer.Dial(s.wsURL("/ws", q), h)
	if err != nil {
		return nil, resp, err
	}
	return &peer{conn: conn}, resp, nil
}

// joinedAs dials with header h and query kv and returns the name the
// server gave the connection.
func (s *testServer) joinedAs(t testing.TB, h http.Header, kv ...string) (*peer, string) {
	t.Helper()
	p, resp, err := s.dialHeader(h, kv...)
	if err != nil {
		t.Fatalf("dial %v: %v (%s)", kv, err, refusal(resp))
	}
	p.t = t
	t.Cleanup(func() { p.conn.Close() })
	var rp roomPayload
	p.skipUntil("room_changed").decode(t, &rp)
	return p, rp.Name
}

// refusal describes a refused handshake: status and body.
func refusal(resp *http.Response) string {
	if resp == nil {
		return "no response"
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + ": " + string(b)
}

// expectRefused dials and fails unless the handshake is refused with
// status and a body containing sub.
func (s *testServer) expectRefused(t testing.TB, h http.Header, status int, sub string, kv ...string) {
	t.Helper()
	p, resp, err := s.dialHeader(h, kv...)
	if err == nil {
		p.conn.Close()
		t.Fatalf("dial %v succeeded; want %d", kv, status)
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("dial %v: %v (%s); want %d", kv, err, refusal(resp), status)
	}
	if body := refusal(resp); !strings.Contains(body, sub) {
		t.Errorf("dial %v refused with %q; want it to say %q", kv, body, sub)
	}
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func TestLoginTicketConnect(t *testing.T) {
	s := newTestServer(t, Config{Auth: authLogin, UsersFile: writeUsers(t, "alice", "wonderland")})
	tests := []struct {
		name string
		conn func(ticket string) (http.Header, []string)
	}{
		{"query", func(tk string) (http.Header, []string) { return nil, []string{"ticket", tk} }},
		{"bearer header", func(tk string) (http.Header, []string) { return bearer(tk), nil }},
		{"name param ignored", func(tk string) (http.Header, []string) { return nil, []string{"ticket", tk, "name", "mallory"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, kv := tt.conn(s.login(t, "alice", "wonderland"))
			p, name := s.joinedAs(t, h, kv...)
			if name != "alice" {
				t.Fatalf("connected as %q; want alice", name)
			}
			p.say("hi")
			if m := p.skipUntil("new_message").msg(t); m.From != "alice" {
				t.Errorf("message from %q; want alice", m.From)
			}
		})
	}
}

func TestLoginRefusals(t *testing.T) {
	s := newTestServer(t, Config{Auth: authLogin, UsersFile: writeUsers(t, "alice", "wonderland")})
	tests := []struct {
		name, method, body string
		want               int
		sub                string
	}{
		{"wrong password", "POST", `{"username":"alice","password":"nope"}`, 401, "wrong username or password"},
		{"unknown user", "POST", `{"username":"bob","password":"nope"}`, 401, "wrong username or password"},
		{"not json", "POST", `username=alice`, 400, "JSON body"},
		{"two values", "POST", `{"username":"alice","password":"wonderland"}{}`, 400, "JSON body"},
		{"missing password", "POST", `{"username":"alice"}`, 400, "required"},
		{"empty body", "POST", ``, 400, "JSON body"},
		{"oversize body", "POST", `{"username":"` + strings.Repeat("a", 2000) + `","password":"x"}`, 413, "bytes"},
		{"GET", "GET", ``, 405, ""},
		{"PUT", "PUT", `{}`, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := s.post(t, tt.method, "/login", tt.body)
			if code != tt.want || !strings.Contains(body, tt.sub) {
				t.Errorf("%s /login %.40q = %d %q; want %d containing %q", tt.method, tt.body, code, body, tt.want, tt.sub)
			}
		})
	}
	// Unknown user and wrong password must be indistinguishable.
	_, a := s.post(t, "POST", "/login", `{"username":"alice","password":"nope"}`)
	_, b := s.post(t, "POST", "/login", `{"username":"nobody","password":"nope"}`)
	if a != b {
		t.Errorf("wrong password says %q but unknown user says %q", a, b)
	}
}

func TestLoginFailuresRateLimited(t *testing.T) {
	s := newTestServer(t, Config{Auth: authLogin, UsersFile: writeUsers(t, "alice", "wonderland")})
	for i := range loginFailBurst {
		if code, body := s.post(t, "POST", "/login", `{"username":"alice","password":"guess"}`); code != 401 {
			t.Fatalf("failure %d: %d %s; want 401", i, code, body)
		}
	}
	// Even the right password is refused now: that is what stops guessing.
	req, _ := http.NewRequest("POST", s.ts.URL+"/login", strings.NewReader(`{"username":"alice","password":"wonderland"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("after %d failures: %s, Retry-After %q; want 429 with Retry-After", loginFailBurst, resp.Status, resp.Header.Get("Retry-After"))
	}
}

// TestLoginNotConfigured checks that POST /login, where it issues no
// tickets, says why: jwt mode does not use it, guest mode has no users file.
func TestLoginNotConfigured(t *testing.T) {
	users := writeUsers(t, "alice", "wonderland")
	secret := strings.Repeat("k", 32)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"guest without users", Config{}, "login is not configured on this server (no -users file)"},
		{"jwt", Config{Auth: authJWT, JWTSecret: secret}, "login is not used in jwt mode: connect with a JWT"},
		{"jwt with a users file", Config{Auth: authJWT, JWTSecret: secret, UsersFile: users}, "login is not used in jwt mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, tt.cfg)
			code, body := s.post(t, "POST", "/login", `{"username":"alice","password":"wonderland"}`)
			if code != http.StatusNotFound || !strings.Contains(body, tt.want) {
				t.Errorf("POST /login = %d %q; want 404 containing %q", code, body, tt.want)
			}
		})
	}
}

func TestAuthInfo(t *testing.T) {
	users := writeUsers(t, "alice", "wonderland")
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{}, `{"mode":"guest","login":false}`},
		{Config{UsersFile: users}, `{"mode":"guest","login":true}`},
		{Config{Auth: authLogin, UsersFile: users}, `{"mode":"login","login":true}`},
		{Config{Auth: authJWT, JWTSecret: strings.Repeat("k", 32)}, `{"mode":"jwt","login":false}`},
	}
	for _, tt := range tests {
		s := newTestServer(t, tt.cfg)
		if code, body := s.post(t, "GET", "/auth", ""); code != 200 || strings.TrimSpace(body) != tt.want {
			t.Errorf("GET /auth with %+v = %d %s; want %s", tt.cfg, code, body, tt.want)
		}
	}
}

func TestTicketRefused(t *testing.T) {
	s := newTestServer(t, Config{Auth: authLogin, UsersFile: writeUsers(t, "alice", "wonderland")})
	used := s.login(t, "alice", "wonderland")
	s.joinedAs(t, nil, "ticket", used)
	// Issued a minute ago, so past the 30s TTL without a sleep: a short TTL
	// made the first ticket expire too on a loaded machine.
	expired, err := s.auth.tickets.issue("alice", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		h    http.Header
		kv   []string
		sub  string
	}{
		{"missing", nil, nil, "missing ticket"},
		{"reused", nil, []string{"ticket", used}, "already used"},
		{"expired", nil, []string{"ticket", expired}, "expired"},
		{"garbage", nil, []string{"ticket", "AAAA"}, "unknown"},
		{"garbage bearer", bearer("not-a-ticket"), nil, "unknown"},
		{"basic auth", http.Header{"Authorization": {"Basic YTpi"}}, nil, "Bearer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.expectRefused(t, tt.h, http.StatusUnauthorized, tt.sub, tt.kv...)
		})
	}
	if n := s.auth.tickets.len(); n != 0 {
		t.Errorf("%d tickets left after every one was redeemed; want 0", n)
	}
}

func TestGuestMode(t *testing.T) {
	s := newTestServer(t, Config{UsersFile: writeUsers(t, "alice", "wonderland")})
	// Anyone may connect, with or without a name.
	_, name := s.joinedAs(t, nil)
	if !strings.HasPrefix(name, "guest-") {
		t.Errorf("nameless guest got %q", name)
	}
	guest, _ := s.joinedAs(t, nil, "name", "bob")

	// A registered name is not for guests, in any case.
	for _, n := range []string{"alice", "ALICE"} {
		s.expectRefused(t, nil, http.StatusForbidden, "registered", "name", n)
	}
	guest.sendJSON("change_name", map[string]string{"name": "Alice"})
	if e := guest.skipUntil("error"); !strings.Contains(string(e.Payload), errNameReserved) {
		t.Errorf("guest renaming to Alice got %s; want %s", e.Payload, errNameReserved)
	}

	// Logging in gives the registered name, and it stays.
	alice, name := s.joinedAs(t, nil, "ticket", s.login(t, "alice", "wonderland"))
	if name != "alice" {
		t.Fatalf("logged-in guest is %q; want alice", name)
	}
	alice.sendJSON("change_name", map[string]string{"name": "queen"})
	if e := alice.skipUntil("error"); !strings.Contains(string(e.Payload), errNameLocked) {
		t.Errorf("logged-in rename got %s; want %s", e.Payload, errNameLocked)
	}
	// A bad ticket is refused even though guests need none.
	s.expectRefused(t, nil, http.StatusUnauthorized, "unknown", "ticket", "forged")
}

// signJWT makes a token with claims, signed by method with key.
func signJWT(t testing.TB, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWT(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	s := newTestServer(t, Config{Auth: authJWT, JWTSecret: string(secret)})
	hour := time.Now().Add(time.Hour).Unix()

	good := signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "carol", "exp": hour})
	for _, h := range []struct {
		h  http.Header
		kv []string
	}{{bearer(good), []string{"room", "r1"}}, {nil, []string{"ticket", good, "room", "r2"}}} {
		if _, name := s.joinedAs(t, h.h, h.kv...); name != "carol" {
			t.Errorf("good token connected as %q; want carol", name)
		}
	}

	tests := []struct {
		name, tok, sub string
	}{
		{"expired", signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "carol", "exp": time.Now().Add(-time.Hour).Unix()}), "expired"},
		{"no exp", signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "carol"}), "exp"},
		{"wrong signature", signJWT(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), jwt.MapClaims{"sub": "carol", "exp": hour}), "signature"},
		{"alg none", signJWT(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"sub": "carol", "exp": hour}), "signing method"},
		{"alg HS512", signJWT(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"sub": "carol", "exp": hour}), "signing method"},
		{"bad subject", signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "<script>", "exp": hour}), "not a valid name"},
		{"unknown role", signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "carol", "exp": hour, "role": "root"}),
			`role claim: role "root": want admin or moderator`},
		{"not a jwt", "abc.def", "bad token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.expectRefused(t, bearer(tt.tok), http.StatusUnauthorized, tt.sub)
		})
	}
	s.expectRefused(t, nil, http.StatusUnauthorized, "missing token")
}

func TestParseUsers(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h := string(hash)
	tests := []struct {
		name, in string
		users    int
		roles    map[string]role
		wantErr  string
	}{
		{"good", "# c\n\nalice:" + h + "\n  bob:" + h + "  \n", 2, nil, ""},
		{"roles", "alice:" + h + ":admin\nmo:" + h + ":moderator\nbob:" + h, 3,
			map[string]role{"alice": roleAdmin, "mo": roleModerator}, ""},
		{"empty", "", 0, nil, ""},
		{"no colon", "alice " + h, 0, nil, "line 1: want name:bcrypt-hash or name:bcrypt-hash:role"},
		{"unknown role", "alice:" + h + ":owner", 0, nil, `line 1: alice: role "owner": want admin or moderator`},
		{"empty role", "alice:" + h + ":", 0, nil, `line 1: alice: role "": want admin or moderator`},
		{"role of wrong case", "alice:" + h + ":Admin", 0, nil, `role "Admin"`},
		{"bad name", "al ice:" + h, 0, nil, "bad name"},
		{"not bcrypt", "alice:secret", 0, nil, "not a bcrypt hash"},
		{"duplicate", "alice:" + h + "\nAlice:" + h, 0, nil, "line 2: Alice is listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := parseUsers(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseUsers = %v; want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(u.hashes) != tt.users {
				t.Errorf("%d users; want %d", len(u.hashes), tt.users)
			}
			if len(u.roles) != len(tt.roles) {
				t.Errorf("roles %v; want %v", u.roles, tt.roles)
			}
			for name, want := range tt.roles {
				if got := u.roles[name]; got != want {
					t.Errorf("role of %s = %v; want %v", name, got, want)
				}
			}
		})
	}
}

// TestUnknownUserCostsAHash checks the timing defence structurally (timing
// itself is not asserted: the machine is shared): the dummy hash an unknown
// user is checked against has the cost of the dearest real hash.
func TestUnknownUserCostsAHash(t *testing.T) {
	cheap, _ := bcrypt.GenerateFromPassword([]byte("a"), bcrypt.MinCost)
	dear, _ := bcrypt.GenerateFromPassword([]byte("b"), bcrypt.MinCost+2)
	u, err := parseUsers(strings.NewReader("a:" + string(cheap) + "\nb:" + string(dear)))
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost(u.dummy); err != nil || c != bcrypt.MinCost+2 {
		t.Errorf("dummy hash cost %d (%v); want %d", c, err, bcrypt.MinCost+2)
	}
	tests := []struct {
		name, pw string
		want     bool
	}{{"a", "a", true}, {"b", "b", true}, {"a", "b", false}, {"c", "a", false}, {"c", "", false}}
	for _, tt := range tests {
		if got := u.check(tt.name, tt.pw); got != tt.want {
			t.Errorf("check(%q, %q) = %v; want %v", tt.name, tt.pw, got, tt.want)
		}
	}
}

func TestHashPassword(t *testing.T) {
	tests := []struct {
		name, in string
		hidden   bool
		wantErr  string
	}{
		{"pipe", "s3cret\n", false, ""},
		{"crlf", "s3cret\r\n", false, ""},
		{"no newline", "s3cret", false, ""},
		{"terminal", "s3cret", true, ""},
		{"empty", "\n", false, "empty password"},
		{"too long", strings.Repeat("x", 73) + "\n", false, "72 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, stderr bytes.Buffer
			var hidden func() ([]byte, error)
			if tt.hidden {
				hidden = func() ([]byte, error) { return []byte(tt.in), nil }
			}
			err := hashPassword([]string{"-cost", "4"}, strings.NewReader(tt.in), &out, &stderr, hidden)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v; want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			hash := strings.TrimSpace(out.String())
			if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret")); err != nil {
				t.Errorf("printed %q, which does not match the password: %v", hash, err)
			}
		})
	}
}

func TestReloadUsersOnHangup(t *testing.T) {
	path := writeUsers(t, "alice", "wonderland")
	a := newAuthenticator(Config{UsersFile: path}.withDefaults(), testLogger(t))
	stop := a.reloadOnHangup(testLogger(t))
	defer stop()
	if a.registered("bob") {
		t.Fatal("bob registered before the reload")
	}
	os.Rename(writeUsers(t, "alice", "x", "bob", "y"), path)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !a.registered("bob"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("bob not registered 5s after SIGHUP")
		}
	}
	// A broken file is reported and the old users stay.
	os.WriteFile(path, []byte("garbage"), 0o600)
	if err := a.reload(); err == nil || !a.registered("bob") {
		t.Errorf("reload of a broken file: err %v, bob registered %v; want an error and bob kept", err, a.registered("bob"))
	}
}

func TestValidateAuth(t *testing.T) {
	users := writeUsers(t, "alice", "x")
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"guest", Config{}, ""},
		{"login", Config{Auth: authLogin, UsersFile: users}, ""},
		{"jwt", Config{Auth: authJWT, JWTSecret: strings.Repeat("k", 32)}, ""},
		{"bad mode", Config{Auth: "open"}, "want guest, login or jwt"},
		{"login without users", Config{Auth: authLogin}, "needs -users"},
		{"missing users file", Config{UsersFile: "/nonexistent/users"}, "users file"},
		{"short secret", Config{Auth: authJWT, JWTSecret: "short"}, "at least 32 bytes"},
		{"cert without key", Config{TLSCert: "c.pem"}, "go together"},
		{"missing cert", Config{TLSCert: "/nonexistent/c.pem", TLSKey: "/nonexistent/k.pem"}, "tls"},
		{"bad origin", Config{AllowedOrigins: []string{"ftp://x"}}, "allowed origin"},
		{"zero burst", Config{MsgBurst: -1}, "msg-burst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("validate = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseAuthFlags(t *testing.T) {
	tests := []flagCase{
		{"defaults", nil, nil, func(c Config) bool {
			c = c.withDefaults()
			return c.Auth == authGuest && c.TicketTTL == 30*time.Second && c.MsgRate == 10 && c.MsgBurst == 20 &&
				c.MaxConns == 0 && c.AllowedOrigins == nil
		}},
		{"origins", []string{"-allowed-origins", " https://a.example , b.example:8080,"}, nil, func(c Config) bool {
			return len(c.AllowedOrigins) == 2 && c.AllowedOrigins[0] == "https://a.example" && c.AllowedOrigins[1] == "b.example:8080"
		}},
		{"rate off", []string{"-msg-rate", "0"}, nil, func(c Config) bool { return newFlood(c.withDefaults()) == nil }},
		{"secret from env", []string{"-auth", "jwt"}, map[string]string{"HUBBUB_JWT_SECRET": "s", "HUBBUB_MAX_CONNS_PER_IP": "3"},
			func(c Config) bool { return c.Auth == authJWT && c.JWTSecret == "s" && c.MaxConnsPerIP == 3 }},
	}
	checkFlagCases(t, tests)
}

// TestSubcommandDispatch runs gencert through run, as the binary would.
func TestSubcommandDispatch(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	err := run(context.Background(), []string{"gencert", "-host", "localhost", "-cert", cert, "-key", key}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := loadTLS(cert, key); err != nil {
		t.Errorf("gencert via run wrote an unusable pair: %v", err)
	}
}
