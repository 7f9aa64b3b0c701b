package main

import (
	"net/http"
	"testing"
)

func TestOriginPolicy(t *testing.T) {
	tests := []struct {
		allowed      []string
		host, origin string
		want         bool
	}{
		{nil, "chat.example:8080", "", true}, // websocat, scripts
		{nil, "chat.example:8080", "http://chat.example:8080", true},
		{nil, "chat.example:8080", "https://CHAT.example:8080", true},
		{nil, "chat.example:8080", "http://chat.example:9090", false},
		{nil, "chat.example:8080", "http://evil.example", false},
		{nil, "chat.example", "https://chat.example:443", true},
		{nil, "chat.example:443", "https://chat.example", true},
		{nil, "chat.example", "null", false},
		{nil, "chat.example", "not a url", false},
		{[]string{"https://app.example"}, "chat.example", "https://app.example", true},
		{[]string{"https://app.example"}, "chat.example", "https://app.example:443", true},
		{[]string{"https://app.example"}, "chat.example", "http://app.example", false},
		{[]string{"https://app.example"}, "chat.example", "https://app.example.evil", false},
		{[]string{"app.example:3000"}, "chat.example", "http://app.example:3000", true},
		{[]string{"app.example:3000"}, "chat.example", "https://app.example:3000", true},
		{[]string{"app.example:3000"}, "chat.example", "https://app.example", false},
		{[]string{"https://app.example"}, "chat.example", "https://chat.example", true}, // own host stays allowed
		{[]string{"*"}, "chat.example", "https://anything.example", true},
		{[]string{"*"}, "chat.example", "null", true},
	}
	for _, tt := range tests {
		p, err := parseOrigins(tt.allowed)
		if err != nil {
			t.Fatal(err)
		}
		r := &http.Request{Host: tt.host, Header: http.Header{}}
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if got := p.check(r); got != tt.want {
			t.Errorf("allowed %v, Host %s: check(Origin %q) = %v; want %v", tt.allowed, tt.host, tt.origin, got, tt.want)
		}
	}
}

func TestParseOriginsRejects(t *testing.T) {
	for _, o := range []string{"ftp://x.example", "https://x.example/path", "https://", "x.example/path", "https://u@x.example", ""} {
		if _, err := parseOrigins([]string{o}); err == nil {
			t.Errorf("parseOrigins(%q) = nil error; want one", o)
		}
	}
}

func TestOriginOverWebSocket(t *testing.T) {
	s := newTestServer(t, Config{AllowedOrigins: []string{"https://app.example"}})
	own := "http://" + s.ts.Listener.Addr().String()
	for _, origin := range []string{"", own, "https://app.example"} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		s.joinedAs(t, h, "name", "n")
	}
	s.expectRefused(t, http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden, "not allowed")
}
