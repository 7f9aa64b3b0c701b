package main

import (
	"fmt"
)

// Moderation: roles, and what moderators and admins may do.
//
// Roles. A registered user's role comes from the third field of its line
// in the users file (name:bcrypt-hash:role) and is looked up at every
// action, so a SIGHUP reload changes it without a reconnect. With -auth
// jwt the token's role claim decides: the token is the only word the
// server has about its holder. Guests have no role, and a request with the
// API key acts as an admin. Every check is made here, on the server.

// role is what a connection may do beyond chatting.
type role uint8

const (
	roleNone      role = iota // a user or a guest
	roleModerator             // acts in any room
	roleAdmin                 // acts in any room and server-wide
)

// String is the role's name in the users file, a JWT and the protocol.
func (r role) String() string {
	switch r {
	case roleModerator:
		return "moderator"
	case roleAdmin:
		return "admin"
	}
	return ""
}

// parseRole reads a role name: admin or moderator.
func parseRole(s string) (role, error) {
	switch s {
	case "admin":
		return roleAdmin, nil
	case "moderator":
		return roleModerator, nil
	}
	return roleNone, fmt.Errorf("role %q: want admin or moderator", truncate(s, 20))
}

// roleOf is c's role now: none for a guest, its token's for a JWT, else
// what the users file says at this moment. Must only be called from run.
func (h *Hub) roleOf(c *Client) role {
	switch {
	case c.account == "":
		return roleNone
	case c.fixedRole:
		return c.tokenRole
	case h.userRole != nil:
		return h.userRole(c.account)
	}
	return roleNone
}
