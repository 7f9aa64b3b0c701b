package main

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// originPolicy decides which browser pages may open a WebSocket here. A
// request without an Origin header comes from a non-browser client
// (websocat, scripts) and is allowed: browsers always send Origin, so
// allowing its absence opens nothing to cross-site pages. A page on the
// same host as the request is always allowed; others only if listed.
type originPolicy struct {
	anyOrigin bool
	allowed   map[string]bool // normalized "scheme://host[:port]" or bare "host[:port]"
}

// parseOrigins builds a policy from the -allowed-origins entries. Each is
// "*" (any origin: say so explicitly, never by default), a full origin such
// as https://chat.example.com, or a bare host[:port] allowed over either
// scheme.
func parseOrigins(list []string) (originPolicy, error) {
	p := originPolicy{allowed: make(map[string]bool)}
	for _, o := range list {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		key, err := originKey(o, true)
		if err != nil {
			return p, fmt.Errorf("allowed origin %q: %w", o, err)
		}
		p.allowed[key] = true
	}
	return p, nil
}

// originKey normalizes an origin: lower case, default port dropped. With
// bareOK, an entry without a scheme is kept as a bare host.
func originKey(o string, bareOK bool) (string, error) {
	o = strings.ToLower(strings.TrimSpace(o))
	if bareOK && !strings.Contains(o, "://") {
		if o == "" || strings.ContainsAny(o, "/?#@") {
			return "", fmt.Errorf("want scheme://host[:port] or host[:port]")
		}
		return o, nil
	}
	u, err := url.Parse(o)
	if err != nil {
		return "", err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("want http(s)://host[:port] with no path")
	}
	return u.Scheme + "://" + dropDefaultPort(u.Scheme, u.Host), nil
}

// check reports whether r's origin may connect. It is the Upgrader's
// CheckOrigin and is also called by serveWs before any other work, so that
// a refused page cannot use up tickets or connection slots.
func (p originPolicy) check(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if p.anyOrigin {
		return true
	}
	key, err := originKey(origin, false)
	if err != nil {
		return false // "null" (sandboxed frames, file://) and anything malformed
	}
	scheme, host, _ := strings.Cut(key, "://")
	return p.allowed[key] || p.allowed[host] || strings.EqualFold(host, dropDefaultPort(scheme, r.Host))
}

// dropDefaultPort removes scheme's default port from hostport, as browsers
// do in an Origin header.
func dropDefaultPort(scheme, hostport string) string {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil || !(scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		return hostport
	}
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}
