//go:build !linux

package wsconn

import (
	"bufio"
	"net"
)

// readWaiter is a no-op outside Linux: the reader reads straight away, as it
// would without the idle-memory optimisation in readwait.go.
type readWaiter struct{}

func newReadWaiter(net.Conn, *bufio.Reader) readWaiter { return readWaiter{} }

func (readWaiter) wait() {}
