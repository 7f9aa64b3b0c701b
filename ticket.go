package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"sync"
	"time"
)

// ticketBytes is the entropy of a ticket: 256 bits from crypto/rand, well
// above the 128 a guess-proof bearer token needs.
const ticketBytes = 32

// maxTickets bounds the outstanding tickets, so that a user with a valid
// password cannot grow the store without limit by logging in in a loop.
const maxTickets = 100_000

// errTooManyTickets is returned by issue when the store is full.
var errTooManyTickets = errors.New("too many outstanding tickets")

// ticketStore holds the single-use login tickets. A ticket is removed the
// moment it is redeemed, so it works once; one not redeemed within ttl is
// refused and swept away. Safe for concurrent use.
type ticketStore struct {
	ttl time.Duration

	mu      sync.Mutex // guards tickets
	tickets map[string]ticket
}

// ticket is what a ticket string stands for.
type ticket struct {
	user    string
	expires time.Time
}

// newTicketStore returns an empty store whose tickets live for ttl.
func newTicketStore(ttl time.Duration) *ticketStore {
	return &ticketStore{ttl: ttl, tickets: make(map[string]ticket)}
}

// issue returns a new ticket for user, valid until now+ttl.
func (s *ticketStore) issue(user string, now time.Time) (string, error) {
	var b [ticketBytes]byte
	rand.Read(b[:]) // never fails (crypto/rand since Go 1.24)
	tok := base64.RawURLEncoding.EncodeToString(b[:])
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.tickets) >= maxTickets {
		s.sweepLocked(now)
		if len(s.tickets) >= maxTickets {
			return "", errTooManyTickets
		}
	}
	s.tickets[tok] = ticket{user: user, expires: now.Add(s.ttl)}
	return tok, nil
}

// redeem consumes tok and returns its user. It fails for a ticket that is
// unknown, already redeemed or expired.
func (s *ticketStore) redeem(tok string, now time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tickets[tok]
	if !ok {
		return "", false
	}
	delete(s.tickets, tok)
	if !now.Before(t.expires) {
		return "", false
	}
	return t.user, true
}

// sweep forgets expired tickets.
func (s *ticketStore) sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweepLocked(now)
}

// sweepLocked is sweep with s.mu held.
func (s *ticketStore) sweepLocked(now time.Time) {
	for tok, t := range s.tickets {
		if !now.Before(t.expires) {
			delete(s.tickets, tok)
		}
	}
}

// len returns the number of tickets held, expired or not.
func (s *ticketStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.tickets)
}
