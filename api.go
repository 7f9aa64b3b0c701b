package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"unicode/utf8"
)

// The server-side API lets a backend post into rooms without holding a
// WebSocket: deploy notices, alerts, bots. It is disabled unless an API key
// is configured, and every call must present that key as a bearer token.
//
// The HTTP handlers never touch hub state. Each call becomes a request on
// the hub's inbound channel carrying an apiCall; the hub goroutine carries it
// out and answers on the call's reply channel, exactly as it would for a
// WebSocket client's message.

// maxAPIBody bounds a publish request body. A message is at most
// maxMessageRunes characters, so 4 KiB leaves room for any valid one in
// JSON escapes and no room for abuse.
const maxAPIBody = 4 << 10

// defaultBotName is the sender of an API message that names none.
const defaultBotName = "hubbub"

// apiOp is what an API call asks of the hub.
type apiOp uint8

const (
	apiPublish  apiOp = iota + 1 // post message to room as from
	apiRooms                     // list rooms and their member counts
	apiModerate                  // carry out mod as an admin called by
	apiInForce                   // list the bans, mutes and slow modes in force
)

// apiCall is one API request on its way to the hub. The handler builds it
// and never touches it again except to read the reply.
type apiCall struct {
	op                  apiOp
	room, from, message string
	// key is the Idempotency-Key header: a publish repeated with the same
	// key, room and from within the dedupe window is not delivered again.
	key string
	// reply carries the hub's answer. Buffered (1), so the hub never waits
	// for a handler that has given up.
	reply chan apiResult
	// msgNum is the node-local message id the hub gave the message (0 in
	// a cluster) and recipients how many members on this node it was
	// queued for; set by the hub.
	msgNum     uint64
	recipients int
	// mod and by are the moderation action of apiModerate and who the
	// caller says it is (shown as "by"; the API key is an admin's).
	mod modAction
	by  string
}

// apiResult is the hub's answer to an apiCall. ID, Room and Recipients
// answer apiPublish (and are its response body); Rooms answers apiRooms.
type apiResult struct {
	ID         uint64      `json:"id"`
	Room       string      `json:"room"`
	Seq        uint64      `json:"seq"`   // the message's seq in its room; 0 if it reached no room log
	Epoch      string      `json:"epoch"` // the room log's epoch; "" with seq 0
	Duplicate  bool        `json:"duplicate,omitempty"`
	Recipients int         `json:"recipients"` // members on this node the message was queued for
	Rooms      []roomInfo  `json:"-"`
	Err        error       `json:"-"` // the broker refused the message
	Mod        *modNotice  `json:"-"` // a moderation action carried out
	InForce    []modNotice `json:"-"` // answers apiInForce
	Fail       *protoError `json:"-"` // a moderation action refused
}

// serveAPI carries out an API call and answers it. Posting to a room with no
// members is accepted and reaches nobody; it does not create the room,
// because rooms exist only while they have members.
// Must only be called from run.
func (h *Hub) serveAPI(a *apiCall) {
	var res apiResult
	switch a.op {
	case apiPublish:
		h.m.received[sourceAPI].Inc()
		r := h.rooms[a.room]
		if r == nil && !h.broker.Sequenced() {
			// A room with no members on a single node has no log to
			// number the message in: it reaches nobody and is not kept.
			a.reply <- apiResult{Room: a.room}
			return
		}
		// Through the broker like any message (cluster.go), so it reaches
		// every node, has a seq and is replayed; answered when it has its
		// seq (ack.go).
		if r != nil {
			a.recipients = len(r.members)
		}
		msgID := ""
		switch {
		case a.key != "":
			msgID = msgIDOf("api:"+a.from, a.key)
		case !h.broker.Sequenced():
			// No key, no dedupe; but on a single node the answer finds the
			// message by its id, so it gets one that no key can be ('~' is
			// not allowed in ids) and no other message has.
			h.apiSeq++
			msgID = msgIDOf("api:"+a.from, "~"+strconv.FormatUint(h.apiSeq, 10))
		}
		h.sendOnce(Envelope{Room: a.room, From: a.from, Message: a.message, Bot: true, MsgID: msgID}, waiter{api: a})
		return
	case apiRooms:
		res.Rooms = h.roomList() // members on other cluster nodes count too
	case apiInForce:
		res.InForce = h.inForce(a.room)
	case apiModerate:
		h.moderate(actor{name: a.by, role: roleAdmin, api: a}, a.mod) // answers on a.reply
		return
	}
	a.reply <- res
}

// handle carries out an API call (a request; see Hub).
func (a *apiCall) handle(h *Hub) { h.serveAPI(a) }

// apiRoutes adds the API endpoints to mux when an API key is configured.
// Without one they do not exist (404), so an unconfigured server exposes no
// write path besides the WebSocket itself.
func (s *Server) apiRoutes(mux *http.ServeMux) {
	if s.cfg.APIKey == "" {
		return
	}
	mux.HandleFunc("POST /api/rooms/{room}/messages", s.requireKey(s.servePublish))
	mux.HandleFunc("GET /api/rooms", s.requireKey(s.serveRoomList))
	mux.HandleFunc("GET /api/moderation", s.requireKey(s.serveInForce))
	// Moderation (moderation.go), as an admin: in a room, or server-wide.
	for _, r := range []struct {
		pattern, action string
		server          bool
	}{
		{"POST /api/rooms/{room}/kick", "kick", false},
		{"POST /api/kick", "kick", true},
		{"POST /api/rooms/{room}/bans", "ban", false},
		{"POST /api/bans", "ban", true},
		{"DELETE /api/rooms/{room}/bans/{name}", "unban", false},
		{"DELETE /api/bans/{name}", "unban", true},
		{"POST /api/rooms/{room}/mutes", "mute", false},
		{"POST /api/mutes", "mute", true},
		{"DELETE /api/rooms/{room}/mutes/{name}", "unmute", false},
		{"DELETE /api/mutes/{name}", "unmute", true},
		{"DELETE /api/rooms/{room}/messages/{seq}", "delete_message", false},
		{"PUT /api/rooms/{room}/slow-mode", "slow_mode", false},
		{"DELETE /api/rooms/{room}/slow-mode", "slow_mode", false},
	} {
		mux.HandleFunc(r.pattern, s.requireKey(func(w http.ResponseWriter, req *http.Request) {
			s.serveModerate(w, req, r.action, r.server)
		}))
	}
}

// modBody is the body of a moderation call; each uses the fields it needs.
type modBody struct {
	Name     *string `json:"name,omitempty"`
	Duration *string `json:"duration,omitempty"`
	Interval *string `json:"interval,omitempty"`
	Reason   string  `json:"reason,omitempty"`
	By       string  `json:"by,omitempty"`
}

// serveModerate carries out one moderation call: the path gives the room
// (or, server-wide, none), a name or a seq; the body the rest. The event's
// own decoder (decodeModeration) checks it, so that the API takes exactly
// what a client may send.
func (s *Server) serveModerate(w http.ResponseWriter, r *http.Request, action string, server bool) {
	var b modBody
	if r.Method != http.MethodDelete || action == "slow_mode" {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
		dec.DisallowUnknownFields()
		err := dec.Decode(&b)
		if errors.Is(err, io.EOF) && r.Method == http.MethodDelete {
			err = nil // DELETE …/slow-mode needs no body
		}
		if err != nil {
			apiError(w, http.StatusBadRequest, `body must be a JSON object such as {"name":"bob","duration":"10m","reason":"spam"}: `+err.Error())
			return
		}
	}
	room := r.PathValue("room")
	if !server && !validRoom(room) {
		apiError(w, http.StatusBadRequest, "bad room: "+roomRule)
		return
	}
	p := map[string]any{"room": room, "server": server, "reason": b.Reason}
	if name := r.PathValue("name"); name != "" {
		b.Name = &name
	}
	if b.Name != nil {
		p["name"] = *b.Name
	}
	if b.Duration != nil {
		p["duration"] = *b.Duration
	}
	switch {
	case action == "slow_mode" && r.Method == http.MethodDelete:
		p["interval"] = "off"
	case b.Interval != nil:
		p["interval"] = *b.Interval
	}
	if action == "delete_message" {
		seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
		if err != nil || seq == 0 {
			apiError(w, http.StatusBadRequest, "bad seq: the message's seq, a number from 1")
			return
		}
		p["seq"] = seq
		if epoch := r.URL.Query().Get("epoch"); epoch != "" {
			p["epoch"] = epoch
		}
	}
	if server {
		delete(p, "room")
	}
	raw, _ := json.Marshal(p)
	var a modAction
	switch cmd := decodeModeration(inEvent{Type: action, Payload: raw}).(type) {
	case failCmd:
		apiErrorOf(w, modStatus(cmd.err.Code), cmd.err)
		return
	case modCmd:
		a = cmd.modAction
	}
	by := b.By
	if by == "" {
		by = "api"
	}
	if !validName(by) {
		apiError(w, http.StatusBadRequest, "bad by: "+nameRule)
		return
	}
	res, status, err := s.callHub(r.Context(), &apiCall{op: apiModerate, mod: a, by: by})
	switch {
	case err != nil:
		apiError(w, status, err.Error())
	case res.Fail != nil:
		apiErrorOf(w, modStatus(res.Fail.Code), res.Fail)
	default:
		writeJSON(w, http.StatusOK, res.Mod)
	}
}

// modStatus is the HTTP status of a refused moderation call's error code.
func modStatus(code string) int {
	switch code {
	case errForbidden:
		return http.StatusForbidden
	case errNoSuchUser, errNotFound:
		return http.StatusNotFound
	case errTooMany:
		return http.StatusConflict
	case errNotDelivered:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// requireKey wraps h so that it runs only for requests bearing the API key.
func (s *Server) requireKey(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.keyMatches(r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="hubbub"`)
			apiError(w, http.StatusUnauthorized, "missing or wrong API key")
			return
		}
		h(w, r)
	}
}

// keyMatches reports whether an Authorization header carries the API key.
// Both sides are hashed first so that the constant-time comparison also
// hides the key's length.
func (s *Server) keyMatches(header string) bool {
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(header[len(scheme):])))
	want := sha256.Sum256([]byte(s.cfg.APIKey))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// publishBody is the body of POST /api/rooms/{room}/messages.
type publishBody struct {
	Message *string `json:"message"`
	From    string  `json:"from"`
}

// servePublish posts a message into a room as a bot sender.
func (s *Server) servePublish(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if !validRoom(room) {
		apiError(w, http.StatusBadRequest, "bad room: "+roomRule)
		return
	}
	body, status, err := decodePublish(w, r)
	if err != nil {
		apiErrorOf(w, status, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key != "" && !validID(key) {
		apiError(w, http.StatusBadRequest, "bad Idempotency-Key: "+idRule)
		return
	}
	res, status, err := s.callHub(r.Context(), &apiCall{op: apiPublish, room: room, from: body.From,
		message: *body.Message, key: key})
	if err == nil && res.Err != nil {
		err, status = notDelivered(res.Err), http.StatusServiceUnavailable
	}
	if err != nil {
		apiError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// decodePublish reads and validates a publish body. On failure it returns
// the HTTP status that says what was wrong.
func decodePublish(w http.ResponseWriter, r *http.Request) (publishBody, int, error) {
	var b publishBody
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&b)
	if err == nil && dec.Decode(&struct{}{}) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return b, http.StatusRequestEntityTooLarge, fmt.Errorf("body over %d bytes", maxAPIBody)
	case err != nil:
		return b, http.StatusBadRequest, fmt.Errorf(`body must be {"message":"…","from":"…"}: %w`, err)
	case b.Message == nil:
		return b, http.StatusBadRequest, errors.New(`body has no "message"`)
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(*b.Message)); n > maxMessageRunes {
		return b, http.StatusRequestEntityTooLarge, &protoError{Code: errTooLong,
			Message: fmt.Sprintf("message has %d characters; at most %d are allowed; it was not sent", n, maxMessageRunes)}
	}
	if *b.Message = cleanMessage(*b.Message); *b.Message == "" {
		return b, http.StatusBadRequest, errors.New("empty message")
	}
	if b.From == "" {
		b.From = defaultBotName
	}
	if !validName(b.From) {
		return b, http.StatusBadRequest, errors.New("bad from: " + nameRule)
	}
	return b, 0, nil
}

// serveRoomList lists every room with its member count.
func (s *Server) serveRoomList(w http.ResponseWriter, r *http.Request) {
	res, status, err := s.callHub(r.Context(), &apiCall{op: apiRooms})
	if err != nil {
		apiError(w, status, err.Error())
		return
	}
	total := 0
	for _, ri := range res.Rooms {
		total += ri.Members
	}
	writeJSON(w, http.StatusOK, struct {
		Rooms   []roomInfo `json:"rooms"`
		Members int        `json:"members"` // sum over all rooms
	}{res.Rooms, total})
}

// serveInForce lists the bans, mutes and slow modes in force on this node
// (in a cluster, every node's), oldest first; ?room= keeps those that
// bind in that room, server-wide ones included.
func (s *Server) serveInForce(w http.ResponseWriter, r *http.Request) {
	room := r.URL.Query().Get("room")
	if room != "" && !validRoom(room) {
		apiError(w, http.StatusBadRequest, "bad room: "+roomRule)
		return
	}
	res, status, err := s.callHub(r.Context(), &apiCall{op: apiInForce, room: room})
	if err != nil {
		apiError(w, status, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, struct {
		InForce []modNotice `json:"in_force"`
	}{res.InForce})
}

// errHubStopped is the answer to API calls once shutdown has begun.
var errHubStopped = errors.New("server shutting down")

// callHub submits a to the hub and waits for its answer, for the hub to
// stop, or for the caller to give up, whichever comes first.
func (s *Server) callHub(ctx context.Context, a *apiCall) (apiResult, int, error) {
	if s.draining.Load() {
		return apiResult{}, http.StatusServiceUnavailable, errHubStopped
	}
	a.reply = make(chan apiResult, 1)
	if !s.hub.submit(a) {
		return apiResult{}, http.StatusServiceUnavailable, errHubStopped
	}
	select {
	case res := <-a.reply:
		return res, 0, nil
	case <-s.hub.done:
		select { // it may have answered just before stopping
		case res := <-a.reply:
			return res, 0, nil
		default:
			return apiResult{}, http.StatusServiceUnavailable, errHubStopped
		}
	case <-ctx.Done():
		return apiResult{}, http.StatusServiceUnavailable, fmt.Errorf("waiting for the hub: %w", ctx.Err())
	}
}

// apiError answers with status and a JSON error body.
func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// apiErrorOf answers with status and err: an error event's code and
// sentence, when err is one, beside the sentence every error body has.
func apiErrorOf(w http.ResponseWriter, status int, err error) {
	var pe *protoError
	if errors.As(err, &pe) {
		writeJSON(w, status, struct {
			Error string `json:"error"`
			Code  string `json:"code"`
		}{pe.Message, pe.Code})
		return
	}
	apiError(w, status, err.Error())
}

// writeJSON answers with status and v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
