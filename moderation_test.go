package main

import (
	"os"
	"testing"
)

// TestRoleFollowsReload: a logged-in user's role comes from the users file
// as it is now, so a reload that takes the role away takes effect at the
// next join, without a reconnect.
func TestRoleFollowsReload(t *testing.T) {
	path := writeUsers(t, "mo:moderator", "pw", "ad:admin", "pw", "bob", "pw")
	s := newTestServer(t, Config{UsersFile: path})
	tests := []struct{ user, want string }{{"mo", "moderator"}, {"ad", "admin"}, {"bob", ""}}
	for _, tt := range tests {
		p := s.dial(t, "ticket", s.login(t, tt.user, "pw"))
		var rp roomPayload
		p.skipUntil("room_changed").decode(t, &rp)
		if rp.Role != tt.want {
			t.Errorf("%s: room_changed role %q; want %q", tt.user, rp.Role, tt.want)
		}
	}
	mo := s.dial(t, "ticket", s.login(t, "mo", "pw"))
	mo.skipUntil("room_changed")
	os.Rename(writeUsers(t, "mo", "pw"), path)
	if err := s.auth.reload(); err != nil {
		t.Fatal(err)
	}
	mo.sendJSON("change_room", map[string]string{"name": "elsewhere"})
	var rp roomPayload
	mo.skipUntil("room_changed").decode(t, &rp)
	if rp.Role != "" {
		t.Errorf("after the reload mo's role is %q; want none", rp.Role)
	}
}
