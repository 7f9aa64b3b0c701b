package main

import (
	"bufio"
	"crypto/rand"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// Auth modes, chosen with -auth.
const (
	authGuest = "guest" // anyone may connect; logging in is optional
	authLogin = "login" // every WebSocket needs a ticket from POST /login
	authJWT   = "jwt"   // every WebSocket needs an HS256 JWT signed with -jwt-secret
)

// Limits of the login endpoint and of credentials.
const (
	// loginBodyLimit bounds a POST /login body; larger bodies get 413.
	loginBodyLimit = 1 << 10
	// loginFailBurst failed logins are allowed from one client address
	// before it gets 429; after that one more every loginFailEvery.
	loginFailBurst = 5
	loginFailEvery = 6 * time.Second
	// minJWTSecret is the shortest -jwt-secret accepted: HS256 wants a key
	// at least as long as its 256-bit output.
	minJWTSecret = 32
	// jwtLeeway absorbs clock skew between the token issuer and us.
	jwtLeeway = 30 * time.Second
)

// validateAuth reports auth, origin and TLS settings that cannot work.
// It loads the users file and the certificate once, so that a typo is a
// clear error at startup rather than a surprise at the first login.
func (c Config) validateAuth() error {
	switch c.Auth {
	case authGuest, authLogin, authJWT:
	default:
		return fmt.Errorf("auth mode %q: want guest, login or jwt", c.Auth)
	}
	if c.Auth == authLogin && c.UsersFile == "" {
		return errors.New("-auth login needs -users FILE (lines name:bcrypt-hash; see hubbub hash-password)")
	}
	if c.Auth == authJWT && len(c.JWTSecret) < minJWTSecret {
		return fmt.Errorf("-auth jwt needs -jwt-secret (or HUBBUB_JWT_SECRET) of at least %d bytes", minJWTSecret)
	}
	if c.UsersFile != "" {
		if _, err := loadUsers(c.UsersFile); err != nil {
			return err
		}
	}
	if _, err := parseOrigins(c.AllowedOrigins); err != nil {
		return err
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	if c.TLSCert != "" {
		if _, err := loadTLS(c.TLSCert, c.TLSKey); err != nil {
			return err
		}
	}
	if c.MsgRate > 0 && c.MsgBurst < 1 {
		return fmt.Errorf("msg burst %d: must be at least 1", c.MsgBurst)
	}
	return nil
}

// authenticator decides who may open a WebSocket and under which name. Its
// fields are set in newAuthenticator and never reassigned, except users,
// which SIGHUP swaps atomically; so every method is safe from any goroutine.
type authenticator struct {
	mode      string
	usersFile string
	jwtKey    []byte
	log       *slog.Logger

	users    atomic.Pointer[userSet] // nil without a users file
	tickets  *ticketStore
	failures *ipLimiter // failed logins per client address
}

// newAuthenticator builds the authenticator for cfg. A users file that no
// longer loads (it was checked by validateAuth) is logged and treated as
// empty, so that login fails closed.
func newAuthenticator(cfg Config, log *slog.Logger) *authenticator {
	a := &authenticator{
		mode:      cfg.Auth,
		usersFile: cfg.UsersFile,
		jwtKey:    []byte(cfg.JWTSecret),
		log:       log,
		tickets:   newTicketStore(cfg.TicketTTL),
		failures:  newIPLimiter(loginFailEvery, loginFailBurst),
	}
	if cfg.UsersFile != "" {
		if err := a.reload(); err != nil {
			log.Error("users file not loaded; nobody can log in", "err", err)
			a.users.Store(&userSet{})
		}
	}
	return a
}

// reload reads the users file again and swaps it in. On error the old set
// stays. Tickets already issued stay valid until they expire.
func (a *authenticator) reload() error {
	u, err := loadUsers(a.usersFile)
	if err != nil {
		return err
	}
	a.users.Store(u)
	a.log.Info("users loaded", "file", a.usersFile, "users", len(u.hashes))
	return nil
}

// loginEnabled reports whether POST /login can issue tickets.
func (a *authenticator) loginEnabled() bool {
	return a.mode != authJWT && a.users.Load() != nil
}

// registered reports whether name belongs to a registered user, ignoring
// case so that nobody can pass as "Alice" next to "alice".
func (a *authenticator) registered(name string) bool {
	u := a.users.Load()
	if u == nil {
		return false
	}
	_, ok := u.folded[strings.ToLower(name)]
	return ok
}

// roleOf returns the role the users file gives account: looked up on every
// call, so that a SIGHUP reload takes effect at the next action without a
// reconnect. None without a users file or for a name it does not list.
func (a *authenticator) roleOf(account string) role {
	u := a.users.Load()
	if u == nil {
		return roleNone
	}
	return u.roles[account]
}

// logMode prints the startup line that says who may connect.
func (a *authenticator) logMode(log *slog.Logger) {
	switch a.mode {
	case authGuest:
		log.Warn("auth: guest mode, the server is open to anyone who can reach it; use -auth login or -auth jwt to restrict",
			"login", a.loginEnabled())
	case authLogin:
		log.Info("auth: login mode, every connection needs a ticket from POST /login", "users", a.usersFile)
	case authJWT:
		log.Info("auth: jwt mode, every connection needs an HS256 token signed with the -jwt-secret")
	}
}

// userSet is one load of the users file. Immutable once built.
type userSet struct {
	hashes map[string][]byte   // name -> bcrypt hash
	folded map[string]struct{} // lower-cased names, for reservation
	roles  map[string]role     // name -> its role, for names that have one
	// dummy is a hash of a random password at the highest cost in the
	// file. Unknown users are checked against it so they cost as much
	// time as a wrong password does.
	dummy []byte
}

// loadUsers parses a users file: one "name:bcrypt-hash" or
// "name:bcrypt-hash:role" per line (role admin or moderator); blank lines
// and lines starting with # are skipped.
func loadUsers(path string) (*userSet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	u, err := parseUsers(f)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return u, nil
}

// parseUsers reads the users file format from r.
func parseUsers(r io.Reader) (*userSet, error) {
	u := &userSet{hashes: map[string][]byte{}, folded: map[string]struct{}{}, roles: map[string]role{}}
	cost := bcrypt.MinCost
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want name:bcrypt-hash or name:bcrypt-hash:role", n)
		}
		// A bcrypt hash never holds a colon, so a second one starts the role.
		hash, roleName, hasRole := strings.Cut(hash, ":")
		var r role
		if hasRole {
			var err error
			if r, err = parseRole(roleName); err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", n, truncate(name, 40), err)
			}
		}
		if !validName(name) {
			return nil, fmt.Errorf("line %d: bad name %q: %s", n, truncate(name, 40), nameRule)
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: not a bcrypt hash (make one with hubbub hash-password): %w", n, name, err)
		}
		if _, dup := u.folded[strings.ToLower(name)]; dup {
			return nil, fmt.Errorf("line %d: %s is listed twice (names are compared ignoring case)", n, name)
		}
		u.hashes[name] = []byte(hash)
		u.folded[strings.ToLower(name)] = struct{}{}
		if r != roleNone {
			u.roles[name] = r
		}
		cost = max(cost, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), cost)
	if err != nil {
		return nil, fmt.Errorf("dummy hash: %w", err)
	}
	u.dummy = dummy
	return u, nil
}

// check reports whether password is name's. An unknown name is compared
// against the dummy hash, so the answer takes as long either way.
func (u *userSet) check(name, password string) bool {
	hash, known := u.hashes[name]
	if !known {
		hash = u.dummy
	}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	return known && err == nil
}

// serveAuthInfo answers GET /auth with the mode, so the page knows whether
// to show a login form: {"mode":"guest","login":true}.
func (s *Server) serveAuthInfo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Mode  string `json:"mode"`
		Login bool   `json:"login"`
	}{s.auth.mode, s.auth.loginEnabled()})
}

// serveLogin answers POST /login {"username","password"} with a single-use
// ticket: 200 {"ticket":"…","expires_in":30}. Errors are plain text: 400
// malformed body, 401 wrong credentials (the same for an unknown user), 404
// in jwt mode or without a users file (saying which), 413 body too large,
// 429 too many failures from this address. Other methods get 405 from the
// router.
func (s *Server) serveLogin(w http.ResponseWriter, r *http.Request) {
	a := s.auth
	switch {
	case a.mode == authJWT:
		http.Error(w, "login is not used in jwt mode: connect with a JWT signed with the server's -jwt-secret "+
			"(Authorization: Bearer JWT, or ?ticket=JWT)", http.StatusNotFound)
		return
	case !a.loginEnabled():
		http.Error(w, "login is not configured on this server (no -users file)", http.StatusNotFound)
		return
	}
	ip := ipKey(r.RemoteAddr)
	if wait := a.failures.blocked(ip, time.Now()); wait > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())+1))
		http.Error(w, "too many failed logins from your address; try again later", http.StatusTooManyRequests)
		return
	}
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if status, msg := decodeLoginBody(w, r, &body); status != 0 {
		http.Error(w, msg, status)
		return
	}
	if !a.users.Load().check(body.Username, body.Password) {
		a.failures.fail(ip, time.Now())
		s.log.Info("login failed", "remote", r.RemoteAddr)
		http.Error(w, "wrong username or password", http.StatusUnauthorized)
		return
	}
	ticket, err := a.tickets.issue(body.Username, time.Now())
	if err != nil {
		s.log.Warn("no ticket issued", "err", err)
		http.Error(w, "cannot issue a ticket right now; try again", http.StatusServiceUnavailable)
		return
	}
	s.log.Debug("login", "user", body.Username, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Ticket    string `json:"ticket"`
		ExpiresIn int    `json:"expires_in"`
	}{ticket, int(math.Ceil(a.tickets.ttl.Seconds()))})
}

// decodeLoginBody reads exactly one JSON object with a non-empty username
// and password. It returns 0 on success, or the status and message to send.
// The Content-Type is not checked: curl -d sends a form type by default.
func decodeLoginBody(w http.ResponseWriter, r *http.Request, v *struct {
	Username string `json:"username"`
	Password string `json:"password"`
}) (int, string) {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, loginBodyLimit))
	err := dec.Decode(v)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("body over %d bytes", loginBodyLimit)
	case err != nil:
		return http.StatusBadRequest, `want a JSON body {"username":"…","password":"…"}`
	case v.Username == "" || v.Password == "":
		return http.StatusBadRequest, "username and password are both required"
	}
	return 0, ""
}

// identity is who a WebSocket connection is, as its handshake proved it.
type identity struct {
	account string // the user name it logged in as; "" for a guest
	// tokenRole is the role claim of a JWT (jwt mode), which the token
	// itself vouches for; fixed is set when it applies. Otherwise the
	// role is looked up in the users file at each action (roleOf).
	tokenRole role
	fixed     bool
}

// identify works out who the WebSocket request r is, before the upgrade.
// It returns the identity (an empty account for a guest), or an HTTP status
// and a short reason to refuse with. wantName is the ?name= asked for; a
// guest may not take a registered user's name.
func (a *authenticator) identify(r *http.Request, wantName string) (id identity, status int, reason string) {
	cred, err := credential(r)
	if err != nil {
		return identity{}, http.StatusUnauthorized, err.Error()
	}
	switch {
	case a.mode == authJWT:
		if cred == "" {
			return identity{}, http.StatusUnauthorized, "missing token: send Authorization: Bearer JWT (or ?ticket=JWT)"
		}
		user, rl, err := a.verifyJWT(cred, time.Now())
		if err != nil {
			return identity{}, http.StatusUnauthorized, "bad token: " + err.Error()
		}
		return identity{account: user, tokenRole: rl, fixed: true}, 0, ""
	case cred != "":
		user, ok := a.tickets.redeem(cred, time.Now())
		if !ok {
			return identity{}, http.StatusUnauthorized, "ticket unknown, expired or already used: log in again with POST /login"
		}
		return identity{account: user}, 0, ""
	case a.mode == authLogin:
		return identity{}, http.StatusUnauthorized, "missing ticket: log in with POST /login, then pass ?ticket= or Authorization: Bearer"
	case wantName != "" && a.registered(wantName):
		return identity{}, http.StatusForbidden, wantName + " is a registered name: log in to use it, or choose another"
	}
	return identity{}, 0, ""
}

// credential returns the bearer token of r: the Authorization header if
// present (it must then be Bearer), else ?ticket=, else "".
func credential(r *http.Request) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", errors.New(`the Authorization header must be "Bearer TOKEN"`)
		}
		return strings.TrimSpace(tok), nil
	}
	return r.URL.Query().Get("ticket"), nil
}

// jwtClaims are the claims hubbub reads from a token: the registered
// ones, and role (admin or moderator; absent: none).
type jwtClaims struct {
	jwt.RegisteredClaims
	Role string `json:"role,omitempty"`
}

// verifyJWT checks an HS256 token signed with the secret and returns its
// subject and role. exp is required; alg none and every other algorithm
// are refused, and so is a role claim other than admin or moderator.
func (a *authenticator) verifyJWT(tok string, now time.Time) (string, role, error) {
	var claims jwtClaims
	_, err := jwt.ParseWithClaims(tok, &claims,
		func(*jwt.Token) (any, error) { return a.jwtKey, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(jwtLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return "", roleNone, err
	}
	if !validName(claims.Subject) {
		return "", roleNone, fmt.Errorf("subject %q is not a valid name: %s", truncate(claims.Subject, 40), nameRule)
	}
	var r role
	if claims.Role != "" {
		if r, err = parseRole(claims.Role); err != nil {
			return "", roleNone, fmt.Errorf("role claim: %w", err)
		}
	}
	return claims.Subject, r, nil
}

// hashPassword is the hash-password subcommand: it reads one password line
// from in (without echo when in is a terminal) and prints its bcrypt hash,
// ready to paste after "name:" in a users file.
func hashPassword(args []string, in io.Reader, out, stderr io.Writer, readHidden func() ([]byte, error)) error {
	fs := newSubFlagSet("hash-password", stderr, "reads a password from stdin and prints its bcrypt hash")
	cost := fs.Int("cost", bcrypt.DefaultCost, "bcrypt cost (4-31); each step doubles the time a login takes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var pw []byte
	var err error
	if readHidden != nil {
		fmt.Fprint(stderr, "password: ")
		pw, err = readHidden()
		fmt.Fprintln(stderr)
	} else {
		pw, err = bufio.NewReader(io.LimitReader(in, 1<<10)).ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	if err != nil {
		return fmt.Errorf("read password: %w", err)
	}
	pw = []byte(strings.TrimRight(string(pw), "\r\n"))
	if len(pw) == 0 {
		return errors.New("empty password")
	}
	hash, err := bcrypt.GenerateFromPassword(pw, *cost)
	if err != nil {
		return fmt.Errorf("hash: %w", err) // over 72 bytes or a bad cost
	}
	_, err = fmt.Fprintln(out, string(hash))
	return err
}

// newSubFlagSet returns a flag set for a subcommand whose usage line says
// what it does.
func newSubFlagSet(name string, stderr io.Writer, what string) *flag.FlagSet {
	fs := flag.NewFlagSet("hubbub "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: hubbub %s [flags]\n\n%s\n\n", name, what)
		fs.PrintDefaults()
	}
	return fs
}

// reloadOnHangup reloads the users file whenever the process gets SIGHUP,
// keeping the old users if the new file does not load. It returns a
// function that stops the watcher and waits for it. Without a users file
// it does nothing (and SIGHUP keeps its default effect).
func (a *authenticator) reloadOnHangup(log *slog.Logger) (stop func()) {
	if a.usersFile == "" {
		return func() {}
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-hup:
				if err := a.reload(); err != nil {
					log.Error("users file not reloaded; keeping the old users", "err", err)
				}
			case <-done:
				return
			}
		}
	})
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}
}

// hiddenStdin returns a reader of one line from the terminal without echo
// when stdin is a terminal, or nil when it is a pipe or file.
func hiddenStdin() func() ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if !term.IsTerminal(fd) {
		return nil
	}
	return func() ([]byte, error) { return term.ReadPassword(fd) }
}

// admit runs the checks a WebSocket request must pass before the upgrade,
// cheapest and least revealing first: origin (403), connection limits (503
// server full, 429 too many from this address), then identity (401, or 403
// for a guest asking for a registered name). On success it returns the
// identity (an empty account for a guest) and the release function of the connection
// slot; otherwise it has written a plain-text refusal.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, wantName string) (id identity, release func(), ok bool) {
	if !s.origins.check(r) {
		http.Error(w, "origin "+truncate(r.Header.Get("Origin"), 100)+" is not allowed (see -allowed-origins)", http.StatusForbidden)
		return identity{}, nil, false
	}
	status, release := s.conns.acquire(ipKey(r.RemoteAddr))
	switch status {
	case 0:
	case http.StatusTooManyRequests:
		http.Error(w, "too many connections from your address", status)
		return identity{}, nil, false
	default:
		http.Error(w, "server full: too many connections; try again later", status)
		return identity{}, nil, false
	}
	id, status, reason := s.auth.identify(r, wantName)
	if status != 0 {
		release()
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hubbub"`)
		}
		http.Error(w, reason, status)
		return identity{}, nil, false
	}
	return id, release, true
}

// sweepAuth periodically forgets expired tickets and idle failed-login
// buckets. It runs from NewServer until Shutdown.
func (s *Server) sweepAuth() {
	defer s.sweeps.Done()
	t := time.NewTicker(min(max(s.cfg.TicketTTL, time.Second), time.Minute))
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			s.auth.tickets.sweep(now)
			s.auth.failures.sweep(now)
		case <-s.ctx.Done():
			return
		}
	}
}
