package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// readyCheck is one dependency /readyz consults, such as a broker
// connection. check must be quick and must not block: it runs on every
// probe, inside the probe's request.
type readyCheck struct {
	name  string
	check func() error
}

// addReadyCheck makes /readyz report not ready while check returns an
// error. Call it while wiring the server up, before it serves requests: the
// list is read without a lock.
func (s *Server) addReadyCheck(name string, check func() error) {
	s.readyChecks = append(s.readyChecks, readyCheck{name, check})
}

// startDraining marks the server as shutting down: /readyz fails from now
// on and the API refuses new calls. Safe to call more than once and from
// any goroutine.
func (s *Server) startDraining() {
	s.draining.Store(true)
}

// opsRoutes adds /healthz and /readyz to mux, and /metrics unless
// MetricsAddr moves it to a listener of its own (serve in main.go).
func (s *Server) opsRoutes(mux *http.ServeMux) {
	if s.cfg.MetricsAddr == "" {
		mux.Handle("GET /metrics", s.metricsHandler())
	}
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	mux.HandleFunc("GET /readyz", s.serveReadyz)
}

// serveHealthz answers 200 while the process can serve HTTP at all: it is a
// liveness probe, so it checks nothing that a restart would not fix.
func (s *Server) serveHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, "ok\n")
}

// serveReadyz answers 200 when the server wants new connections, and 503
// with the reason while it is draining or a dependency check fails.
func (s *Server) serveReadyz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	var problems []string
	if s.draining.Load() {
		problems = append(problems, "draining: server shutting down")
	}
	for _, c := range s.readyChecks {
		if err := c.check(); err != nil {
			problems = append(problems, c.name+": "+err.Error())
		}
	}
	if len(problems) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, strings.Join(problems, "\n")+"\n")
		return
	}
	io.WriteString(w, "ready\n")
}

// healthcheckTimeout bounds the healthcheck subcommand's request, well
// inside the container HEALTHCHECK's own timeout.
const healthcheckTimeout = 3 * time.Second

// healthcheck is the "hubbub healthcheck" subcommand, for container
// HEALTHCHECKs on images that have no curl. It takes the server's own flags
// and HUBBUB_* variables, so it finds the port the server listens on, GETs
// /healthz there and returns the process exit code: 0 healthy, 1 not.
func healthcheck(args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := parseFlags(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0 // the usage was asked for, and printed
	}
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	url := "http://" + probeAddr(cfg.withDefaults().Addr) + "/healthz"
	client := &http.Client{
		Timeout: healthcheckTimeout,
		// A bare Transport: one request, and no HTTP_PROXY for a local port.
		Transport: &http.Transport{DisableKeepAlives: true},
	}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "healthcheck: GET %s: %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// probeAddr turns a listen address into one to connect to from the same
// host: a wildcard or missing host becomes 127.0.0.1.
func probeAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen // let the request report it
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
