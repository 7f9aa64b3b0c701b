package wsconn

import (
	"bufio"
	"net"
	"net/http"
)

// readBufferSize is a connection's read buffer. Client messages are at
// most a few hundred bytes and the reader reads larger payloads past the
// buffer, so a small one costs nothing and saves memory on every idle
// connection.
const readBufferSize = 512

// hijackWrapper is the http.ResponseWriter the upgrader sees. Its Hijack
// hands the upgrader net/http's connection with a readBufferSize reader
// in place of net/http's 4 KiB one, and keeps both for the Conn: the
// upgrader only performs the handshake, and the Conn then reads and
// writes the socket itself.
type hijackWrapper struct {
	http.ResponseWriter
	conn net.Conn      // set by Hijack
	br   *bufio.Reader // set by Hijack: the reader the Conn will read through
}

// Hijack takes over the connection. net/http's reader is only replaced
// when it holds nothing; the upgrader refuses a client that sent data
// before the handshake completed either way, and the Conn is then never
// built.
func (w *hijackWrapper) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = conn
	w.br = brw.Reader
	if brw.Reader.Buffered() == 0 {
		w.br = bufio.NewReaderSize(conn, readBufferSize)
		brw = bufio.NewReadWriter(w.br, brw.Writer)
	}
	return conn, brw, nil
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *hijackWrapper) Unwrap() http.ResponseWriter { return w.ResponseWriter }
