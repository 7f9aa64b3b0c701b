package main

// Pings come from one ticker in the hub instead of a time.Ticker per
// connection: at tens of thousands of idle connections a ticker (a runtime
// timer and a channel) per connection is memory for nothing, and the hub
// already knows every live client.

// pingAll asks every client's writePump to send a ping. It never blocks: a
// writer that has not yet taken the last request keeps it, which is as good
// as a second one. Must only be called from run.
func (h *Hub) pingAll() {
	for c := range h.clients {
		c.send.askPing()
	}
}
