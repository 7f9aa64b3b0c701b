package main

import (
	"slices"
)

// defaultRoom is where a client lands when it names no room.
const defaultRoom = "general"

// maxRoomName and maxNameLen bound room names and nicknames. They keep every
// identifier printable on one terminal line and far below the 512-byte frame
// limit, so an event that carries several of them still fits a frame.
const (
	maxRoomName = 64
	maxNameLen  = 32
)

// validRoom reports whether s is an acceptable room name: 1 to 64 characters
// from [A-Za-z0-9_-]. The alphabet is deliberately small so names can be used
// in URLs and log lines without escaping (broker subjects escape them
// anyway, broker_nats.go).
func validRoom(s string) bool {
	return validIdent(s, maxRoomName)
}

// validName reports whether s is an acceptable nickname: 1 to 32 characters
// from [A-Za-z0-9_-].
func validName(s string) bool {
	return validIdent(s, maxNameLen)
}

// validIdent reports whether s has 1 to max bytes, all from [A-Za-z0-9_-].
func validIdent(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9', b == '_', b == '-':
		default:
			return false
		}
	}
	return true
}

// Room is one chat room: the clients in it and the names they use there.
// A room exists while it has members; the hub creates it on the first join
// and deletes it when the last member leaves.
//
// Owned by Hub.run. No other goroutine may touch a Room.
type Room struct {
	name    string
	members map[*Client]struct{}
	names   map[string]*Client // nickname -> member, for uniqueness
	// remote is the room's members on other cluster nodes, node -> members
	// (cluster.go). Shared with the hub's clusterState; nil when not linked.
	remote map[string]PresenceUpdate
}

// newRoom returns an empty room called name.
func newRoom(name string) *Room {
	return &Room{
		name:    name,
		members: make(map[*Client]struct{}),
		names:   make(map[string]*Client),
	}
}

// add puts c into the room under c.name. The caller has checked that the
// name is free.
func (r *Room) add(c *Client) {
	r.members[c] = struct{}{}
	r.names[c.name] = c
}

// remove takes c out of the room.
func (r *Room) remove(c *Client) {
	delete(r.members, c)
	if r.names[c.name] == c {
		delete(r.names, c.name)
	}
}

// rename changes c's entry in the name index from old to c.name.
func (r *Room) rename(c *Client, old string) {
	if r.names[old] == c {
		delete(r.names, old)
	}
	r.names[c.name] = c
}

// taken reports whether name is used by a member other than c, here or,
// as far as this node knows, on another node.
func (r *Room) taken(name string, c *Client) bool {
	if other, ok := r.names[name]; ok {
		return other != c
	}
	for _, u := range r.remote {
		if slices.Contains(u.Names, name) {
			return true
		}
	}
	return false
}

// size is the number of members on every node.
func (r *Room) size() int {
	n := len(r.members)
	for _, u := range r.remote {
		n += u.Count
	}
	return n
}

// memberNames returns at most max names of members on every node, sorted.
func (r *Room) memberNames(max int) []string {
	names := r.localNames(max)
	for _, u := range r.remote {
		names = append(names, u.Names[:min(len(u.Names), max-len(names))]...)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// localNames returns at most max names of this node's members, sorted. Big
// rooms return a sample rather than every name, so that a join stays cheap
// and its reply stays small; the count is always reported beside the list.
func (r *Room) localNames(max int) []string {
	names := make([]string, 0, min(len(r.names), max))
	for name := range r.names {
		if len(names) == max {
			break
		}
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
