package main

import (
	"net/http"
	"strings"
)

// handshakeError answers a failed WebSocket upgrade. It is the upgrader's
// Error hook; gorilla has already chosen the status (400 for a malformed
// handshake, 403 for a foreign Origin, 405 for a method other than GET).
//
// Two things differ from gorilla's own answer. A client asking for a
// protocol version other than 13 gets 426 Upgrade Required, as RFC 6455
// section 4.4 asks, instead of 400; and the body names what was wrong, so a
// person debugging a client with curl can see it. Either way the response
// carries Sec-WebSocket-Version: 13, the one version hubbub speaks.
func handshakeError(w http.ResponseWriter, r *http.Request, status int, reason error) {
	w.Header().Set("Sec-WebSocket-Version", "13")
	if status == http.StatusBadRequest && !offersVersion13(r) {
		status = http.StatusUpgradeRequired
	}
	http.Error(w, http.StatusText(status)+": "+reason.Error(), status)
}

// offersVersion13 reports whether r's Sec-WebSocket-Version lists 13. A
// missing header counts as offering it: that request failed for some other
// reason, and 426 would send its author looking in the wrong place.
func offersVersion13(r *http.Request) bool {
	vs := r.Header.Values("Sec-WebSocket-Version")
	if len(vs) == 0 {
		return true
	}
	for _, v := range vs {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(tok) == "13" {
				return true
			}
		}
	}
	return false
}
