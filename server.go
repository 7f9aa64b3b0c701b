package main

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"hubbub/internal/wsconn"
)

// assets holds the browser client. Serving only this FS means the binary
// runs from any directory and never exposes files beside it.
//
//go:embed home.html static
var assets embed.FS

// contentSecurityPolicy forbids inline script and any origin but our own,
// so a message that slipped past textContent rendering still could not run.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// echoReadLimit bounds frames on /echo. It is a diagnostic endpoint, so it
// allows more than chat does, but never unbounded.
const echoReadLimit = 64 << 10

// Server is hubbub's HTTP side: it serves the page, upgrades /ws
// connections into hub clients and runs /echo.
type Server struct {
	cfg      Config
	log      *slog.Logger
	hub      *Hub
	upgrader websocket.Upgrader
	auth     *authenticator
	conns    *connLimiter
	origins  originPolicy
	mem      *memReleaser // returns handshake garbage after connect bursts
	// connCfg is how connections of each format behave (disconnect.go);
	// shared by every connection, fixed before serving.
	connCfg [2]*wsconn.Config

	// ctx is cancelled by Shutdown; /echo connections watch it.
	ctx    context.Context
	cancel context.CancelFunc
	echoes sync.WaitGroup // running /echo handlers
	sweeps sync.WaitGroup // the auth sweeper

	draining    atomic.Bool  // set by startDraining; /readyz fails once set
	readyChecks []readyCheck // consulted by /readyz; fixed before serving (health.go)
}

// deps are what a server runs on that must be opened before it. Open opens
// them as a Config says; tests make them directly. The zero value is a
// server in memory, on its own.
type deps struct {
	store  *boltStore // durable history (-data-dir); nil: memory only
	broker Broker     // the cluster link (-nats-url); nil: a private in-memory broker
}

// NewServer builds a server for cfg that keeps everything in memory and
// runs alone, and starts its hub; a cfg that names a DataDir or a NATSURL
// needs Open instead. Call Shutdown to stop the hub and every connection.
func NewServer(cfg Config, log *slog.Logger) *Server {
	return newServer(cfg, log, deps{})
}

// Open builds a server for cfg, first opening what its settings name: the
// history store in DataDir, the link to NATSURL. If anything fails, what
// was opened is closed again and the error says what failed.
func Open(cfg Config, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var d deps
	var err error
	if d.broker, err = openCluster(cfg, log); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		st, err := openBoltStore(cfg.DataDir, cfg.History, log)
		if err != nil {
			if d.broker != nil {
				d.broker.Close()
			}
			return nil, err
		}
		d.store = st
	}
	return newServer(cfg, log, d), nil
}

// newServer builds a server for cfg on the opened dependencies d.
func newServer(cfg Config, log *slog.Logger, d deps) *Server {
	cfg = cfg.withDefaults()
	if (cfg.DataDir != "" && d.store == nil) || (cfg.NATSURL != "" && d.broker == nil) {
		panic("hubbub: Config names a data dir or a NATS URL: build the server with Open")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg: cfg,
		log: log,
		hub: newHub(cfg, log, d),
		mem: newMemReleaser(),
		upgrader: websocket.Upgrader{
			HandshakeTimeout: cfg.WriteWait,
			// For /ws the upgrader only does the handshake (wsconn.Accept);
			// with no read buffer size and a pool it allocates nothing it
			// would throw away. /echo uses it whole.
			WriteBufferSize: 4096,
			WriteBufferPool: &sync.Pool{},
			Error:           handshakeError, // handshake.go
		},
		auth:   newAuthenticator(cfg, log),
		conns:  newConnLimiter(cfg.MaxConns, cfg.MaxConnsPerIP),
		ctx:    ctx,
		cancel: cancel,
	}
	origins, err := parseOrigins(cfg.AllowedOrigins)
	if err != nil { // validate reports it first; here fall back to same host only
		log.Error("allowed origins ignored", "err", err)
		origins, _ = parseOrigins(nil)
	}
	s.origins = origins
	s.upgrader.CheckOrigin = s.origins.check
	for _, f := range []format{formatJSON, formatText} {
		s.connCfg[f] = connConfig(cfg, f, s.hub.m)
	}
	s.hub.registered = s.auth.registered
	s.hub.userRole = s.auth.roleOf
	if s.hub.broker.Sequenced() { // a cluster: not ready while its NATS link is down
		s.addReadyCheck("cluster", s.hub.broker.Ready)
	}
	s.hub.startBroker()
	go s.hub.run()
	s.sweeps.Add(1)
	go s.sweepAuth()
	go s.mem.run(ctx.Done())
	return s
}

// routes returns the HTTP handler for every endpoint.
func (s *Server) routes() http.Handler {
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(fmt.Sprintf("embedded static dir: %v", err)) // cannot happen: embedded at build time
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.serveHome)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /ws", s.serveWs)
	mux.HandleFunc("GET /echo", s.serveEcho)
	mux.HandleFunc("GET /auth", s.serveAuthInfo)
	mux.HandleFunc("POST /login", s.serveLogin)
	s.opsRoutes(mux) // /metrics, /healthz, /readyz (health.go)
	s.apiRoutes(mux) // /api/… when an API key is set (api.go)
	return mux
}

// serveHome serves the browser client.
func (s *Server) serveHome(w http.ResponseWriter, r *http.Request) {
	page, err := assets.ReadFile("home.html")
	if err != nil {
		http.Error(w, "page missing", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(page)
}

// serveWs validates the connect parameters, upgrades the connection and
// hands the new client to the hub. Bad parameters are refused with 400
// before the upgrade, where an HTTP client can still read why.
func (s *Server) serveWs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	room := q.Get("room")
	if room == "" {
		room = defaultRoom
	}
	if !validRoom(room) {
		http.Error(w, "bad room: "+roomRule, http.StatusBadRequest)
		return
	}
	name := q.Get("name")
	if name != "" && !validName(name) {
		http.Error(w, "bad name: "+nameRule, http.StatusBadRequest)
		return
	}
	f, ok := parseFormat(q.Get("format"))
	if !ok {
		http.Error(w, "bad format: use json or text", http.StatusBadRequest)
		return
	}
	resume, err := parseResume(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id, release, ok := s.admit(w, r, name)
	if !ok {
		return
	}
	if id.account != "" {
		name = id.account
	}
	if name != "" {
		if e := s.hub.bannedAt(r.Context(), name, room); e != nil {
			release()
			http.Error(w, e.Message, http.StatusForbidden)
			return
		}
	}

	conn, err := wsconn.Accept(w, r, &s.upgrader, s.connCfg[f])
	if err != nil {
		// The upgrader has already answered with an HTTP error.
		s.log.Debug("upgrade failed", "remote", r.RemoteAddr, "err", err)
		release()
		return
	}
	c := &Client{
		hub:       s.hub,
		conn:      conn,
		format:    f,
		addr:      r.RemoteAddr,
		wantRoom:  room,
		wantName:  name,
		resume:    resume,
		account:   id.account,
		tokenRole: id.tokenRole,
		fixedRole: id.fixed,
		flood:     newFlood(s.cfg),
		release:   release,
	}
	s.mem.noteAccepted()
	if !s.hub.registerClient(c) {
		conn.Close(dcShutdown) // the client still reports its end, to nobody
	}
	conn.Start(c)
}

// serveEcho writes every frame back unchanged with the same message type,
// like gorilla's echo example: a quick way to check that WebSockets get
// through a proxy. It runs in the handler goroutine and ends at Shutdown.
func (s *Server) serveEcho(w http.ResponseWriter, r *http.Request) {
	s.echoes.Add(1)
	defer s.echoes.Done()
	if s.ctx.Err() != nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	_, release, ok := s.admit(w, r, "")
	if !ok {
		return
	}
	defer release()
	conn, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	defer conn.Close()
	stop := context.AfterFunc(s.ctx, func() {
		conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(dcShutdown.Code, dcShutdown.Reason), time.Now().Add(s.cfg.WriteWait))
		conn.Close()
	})
	defer stop()
	conn.SetReadLimit(echoReadLimit)
	for {
		conn.SetReadDeadline(time.Now().Add(s.cfg.PongWait))
		mt, data, err := conn.ReadMessage()
		if err != nil {
			return
		}
		conn.SetWriteDeadline(time.Now().Add(s.cfg.WriteWait))
		if err := conn.WriteMessage(mt, data); err != nil {
			return
		}
	}
}

// Shutdown says goodbye to every WebSocket client (close 1001 after its
// queue is written) and waits for their goroutines, cutting connections
// that are still open when ctx ends. Call it after http.Server.Shutdown,
// which does not wait for hijacked connections.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startDraining()
	s.cancel()
	err := s.hub.Shutdown(ctx)
	s.echoes.Wait() // bounded: cancel closed every echo connection
	s.sweeps.Wait() // cancel stopped it
	<-s.mem.done    // prompt: cancel stopped it too
	// run has returned (Shutdown waits for done), so the history is ours,
	// and no broker callback can be waiting for the hub any more.
	return errors.Join(err, s.hub.history.close(), s.hub.broker.Close())
}

// Ready reports whether this node can serve chat fully: nil, or why not
// (with NATS: the cluster link is down). For a readiness probe.
func (s *Server) Ready() error {
	return s.hub.broker.Ready()
}

// errShutdown is returned by run when a drain did not finish in time.
var errShutdown = errors.New("shutdown incomplete")
