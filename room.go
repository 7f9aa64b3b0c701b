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
// Presence counts people, not connections. A guest's nickname is one
// connection's; a logged-in user's name is its login, which every one of
// its connections uses at once (three tabs of carol are one member,
// carol), here and on the other nodes alike.
//
// Owned by Hub.run. No other goroutine may touch a Room.
type Room struct {
	name    string
	members map[*Client]struct{}
	names   map[string]*Client // name -> a member using it, for uniqueness
	uses    map[string]int     // name -> how many members use it (more than one: one login's connections)
	// remote is the room's members on other cluster nodes, node -> members
	// (cluster.go). Shared with the hub's clusterState; nil when not linked.
	remote map[string]PresenceUpdate
	// told is the count the room was last given in presence_count
	// (Hub.announceCounts); 0 before the first.
	told int
}

// newRoom returns an empty room called name.
func newRoom(name string) *Room {
	return &Room{
		name:    name,
		members: make(map[*Client]struct{}),
		names:   make(map[string]*Client),
		uses:    make(map[string]int),
	}
}

// add puts c into the room under c.name and reports whether the name is
// new here, this node's first member under it. The caller has checked
// that the name is free (taken).
func (r *Room) add(c *Client) bool {
	r.members[c] = struct{}{}
	r.uses[c.name]++
	if r.uses[c.name] == 1 {
		r.names[c.name] = c
		return true
	}
	return false
}

// remove takes c out of the room and reports whether its name is gone
// from this node's members: c was the last connection using it.
func (r *Room) remove(c *Client) bool {
	delete(r.members, c)
	return r.drop(c, c.name)
}

// drop forgets c's use of name and reports whether nobody here uses it
// now.
func (r *Room) drop(c *Client, name string) bool {
	r.uses[name]--
	if r.uses[name] > 0 {
		if r.names[name] == c { // another connection of the login stands for it
			for m := range r.members {
				if m.name == name && m != c {
					r.names[name] = m
					break
				}
			}
		}
		return false
	}
	delete(r.uses, name)
	delete(r.names, name)
	return true
}

// rename changes c's entry in the name index from old to c.name. Only
// guests rename, and a guest's name is its alone.
func (r *Room) rename(c *Client, old string) {
	r.drop(c, old)
	r.uses[c.name]++
	r.names[c.name] = c
}

// taken reports whether name is used by someone other than c (nil: by
// anyone), here or, as
// far as this node knows, on another node. A logged-in client shares its
// login with its own other connections: a guest cannot use a registered
// name, so a member called by c's login elsewhere is c's user.
func (r *Room) taken(name string, c *Client) bool {
	if c != nil && c.account != "" && name == c.account {
		other := r.names[name]
		return other != nil && other.account != c.account
	}
	if other, ok := r.names[name]; ok {
		return other != c
	}
	return r.remoteHas(name, "")
}

// remoteHas reports whether a node other than skip lists name among the
// room's members.
func (r *Room) remoteHas(name, skip string) bool {
	for node, u := range r.remote {
		if node != skip && slices.Contains(u.Names, name) {
			return true
		}
	}
	return false
}

// people is the number of people in the room on this node.
func (r *Room) people() int { return len(r.names) }

// summed is the number of people on this node plus every other node's
// count, at least size; complete says whether every node lists all its
// members' names, so that size can count a login on two nodes once.
func (r *Room) summed() (n int, complete bool) {
	n, complete = len(r.names), true
	for _, u := range r.remote {
		n += u.Count
		complete = complete && len(u.Names) >= u.Count
	}
	return n, complete
}

// size is the number of people in the room on every node. A login with
// connections on two nodes counts once while every node lists all its
// members' names (up to maxMembersInReply each); past that, the nodes'
// counts are added up.
func (r *Room) size() int {
	n, complete := r.summed()
	if !complete || len(r.remote) == 0 {
		return n
	}
	seen := make(map[string]struct{}, n)
	for name := range r.names {
		seen[name] = struct{}{}
	}
	for _, u := range r.remote {
		for _, name := range u.Names {
			seen[name] = struct{}{}
		}
	}
	return len(seen)
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
