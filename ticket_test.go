package main

import (
	"encoding/base64"
	"testing"
	"time"
)

func TestTicketStore(t *testing.T) {
	now := testTime
	s := newTicketStore(30 * time.Second)
	a, err := s.issue("alice", now)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.issue("alice", now)
	expiring, _ := s.issue("bob", now)
	if raw, err := base64.RawURLEncoding.DecodeString(a); err != nil || len(raw)*8 < 128 {
		t.Errorf("ticket %q carries %d bits (%v); want at least 128", a, len(raw)*8, err)
	}
	if a == b {
		t.Error("two tickets are equal")
	}
	tests := []struct {
		name, tok string
		at        time.Duration
		wantUser  string
		wantOK    bool
	}{
		{"first use", a, time.Second, "alice", true},
		{"second use", a, time.Second, "", false},
		{"unknown", "nope", time.Second, "", false},
		{"just before expiry", b, 30*time.Second - time.Nanosecond, "alice", true},
		{"at expiry", expiring, 30 * time.Second, "", false},
	}
	for _, tt := range tests {
		if user, ok := s.redeem(tt.tok, now.Add(tt.at)); user != tt.wantUser || ok != tt.wantOK {
			t.Errorf("%s: redeem = %q, %v; want %q, %v", tt.name, user, ok, tt.wantUser, tt.wantOK)
		}
	}
	// An expired ticket nobody redeems is swept.
	s.issue("carol", now)
	s.sweep(now.Add(29 * time.Second))
	if s.len() != 1 {
		t.Errorf("sweep before expiry left %d tickets; want 1", s.len())
	}
	s.sweep(now.Add(31 * time.Second))
	if s.len() != 0 {
		t.Errorf("sweep after expiry left %d tickets; want 0", s.len())
	}
}

func TestTicketStoreFull(t *testing.T) {
	s := newTicketStore(time.Second)
	for range maxTickets {
		if _, err := s.issue("a", testTime); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.issue("a", testTime); err != errTooManyTickets {
		t.Errorf("issue into a full store: %v; want errTooManyTickets", err)
	}
	// Once those expire there is room again.
	if _, err := s.issue("a", testTime.Add(2*time.Second)); err != nil {
		t.Errorf("issue after the old tickets expired: %v", err)
	}
}
