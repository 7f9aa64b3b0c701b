package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"
)

// debugServer serves operator endpoints — net/http/pprof for -debug-addr,
// /metrics for -metrics-addr, or both when the two name one address — on a
// listener of its own, so they are never reachable through the public
// port: these addresses are meant for loopback or a private interface.
type debugServer struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{} // closed when Serve has returned
}

// pprofRoutes adds the net/http/pprof handlers to mux.
func pprofRoutes(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves heap, goroutine, allocs, …
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}

// startDebug listens on addr and serves the pprof handlers until Close.
func startDebug(addr string, log *slog.Logger) (*debugServer, error) {
	return startSideServer(addr, true, nil, log)
}

// startSideServer listens on addr and serves, until Close, pprof if
// pprofOn and metrics at /metrics if metrics is not nil. It logs one
// "… listening" line for each, with the address it got, so that a port 0
// can be found in the log.
func startSideServer(addr string, pprofOn bool, metrics http.Handler, log *slog.Logger) (*debugServer, error) {
	what := "debug"
	if !pprofOn {
		what = "metrics"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s listen: %w", what, err)
	}
	mux := http.NewServeMux()
	if pprofOn {
		pprofRoutes(mux)
	}
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	d := &debugServer{
		// No WriteTimeout: a CPU profile or trace streams for as long as
		// its ?seconds= asks.
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(d.done)
		if err := d.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Warn(what+" server stopped", "err", err)
		}
	}()
	base := "http://" + displayAddr(d.addr)
	if pprofOn {
		log.Info("pprof listening", "addr", d.addr.String(), "url", base+"/debug/pprof/")
	}
	if metrics != nil {
		log.Info("metrics listening", "addr", d.addr.String(), "url", base+"/metrics")
	}
	return d, nil
}

// Close stops the debug server, cutting any profile in progress, and waits
// for its goroutine. Safe to call more than once.
func (d *debugServer) Close() {
	d.srv.Close()
	<-d.done
}
