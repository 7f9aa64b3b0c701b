package main

import (
	"strings"
	"testing"
)

func TestValidRoom(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"general", true},
		{"a", true},
		{"Room_2-b", true},
		{strings.Repeat("r", 64), true},
		{"", false},
		{strings.Repeat("r", 65), false},
		{"two words", false},
		{"dots.are.out", false},
		{"slash/room", false},
		{"star*", false},
		{">", false},
		{"naïve", false},
		{"tab\t", false},
	}
	for _, tt := range tests {
		if got := validRoom(tt.in); got != tt.want {
			t.Errorf("validRoom(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"alice", true},
		{"guest-0a1b", true},
		{strings.Repeat("n", 32), true},
		{strings.Repeat("n", 33), false},
		{"", false},
		{"a b", false},
		{"<b>", false},
		{"emoji😀", false},
	}
	for _, tt := range tests {
		if got := validName(tt.in); got != tt.want {
			t.Errorf("validName(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

func TestFreeName(t *testing.T) {
	r := newRoom("x")
	for _, n := range []string{"alice", "alice-2", strings.Repeat("z", 32)} {
		r.add(&Client{name: n})
	}
	tests := []struct{ in, want string }{
		{"alice", "alice-3"},
		{"bob", "bob-2"},
		{strings.Repeat("z", 32), strings.Repeat("z", 30) + "-2"},
	}
	for _, tt := range tests {
		got := freeName(r, tt.in)
		if got != tt.want || !validName(got) {
			t.Errorf("freeName(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestRoomMembership(t *testing.T) {
	r := newRoom("x")
	a, b := &Client{name: "a"}, &Client{name: "b"}
	r.add(a)
	r.add(b)
	if !r.taken("a", b) || r.taken("a", a) || r.taken("c", nil) {
		t.Errorf("taken is wrong: %v %v %v", r.taken("a", b), r.taken("a", a), r.taken("c", nil))
	}
	a.name = "a2"
	r.rename(a, "a")
	if r.taken("a", nil) || !r.taken("a2", nil) {
		t.Errorf("rename left the index stale: %v", r.names)
	}
	r.remove(a)
	if got := r.memberNames(10); strings.Join(got, ",") != "b" {
		t.Errorf("memberNames = %v; want [b]", got)
	}
	for i := range 5 {
		r.add(&Client{name: string(rune('c' + i))})
	}
	if got := r.memberNames(3); len(got) != 3 {
		t.Errorf("memberNames(3) returned %d names", len(got))
	}
}
