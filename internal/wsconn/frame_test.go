package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// clientHeader builds a masked client frame header by hand: b0 carries FIN,
// RSV and opcode; n is the payload length, written in the shortest form
// unless long forces the 64-bit one.
func clientHeader(b0 byte, n int, long bool) []byte {
	h := appendHeader(nil, b0&0x0f, n)
	if long {
		h = append([]byte{b0, 127}, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	h[0] = b0
	h[1] |= 0x80
	return append(h, 9, 8, 7, 6)
}

func TestReadHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    header
		wantErr string // "" for none; "EOF" for a short read
	}{
		{"short text", clientHeader(0x81, 5, false), header{fin: true, op: opText, length: 5, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"125", clientHeader(0x81, 125, false), header{fin: true, op: opText, length: 125, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"126: 16-bit length", clientHeader(0x82, 126, false), header{fin: true, op: opBinary, length: 126, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"65535", clientHeader(0x01, 65535, false), header{op: opText, length: 65535, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"65536: 64-bit length", clientHeader(0x80, 65536, false), header{fin: true, op: opContinuation, length: 65536, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"64-bit form of a short length", clientHeader(0x81, 7, true), header{fin: true, op: opText, length: 7, mask: [4]byte{9, 8, 7, 6}}, ""},
		{"ping", clientHeader(0x89, 4, false), header{fin: true, op: opPing, length: 4, mask: [4]byte{9, 8, 7, 6}}, ""},
		// Each reserved bit alone, with both length forms: the check must
		// see the first byte even after the extended length is read.
		{"RSV1", clientHeader(0xC1, 3, false), header{}, "reserved bits set"},
		{"RSV2", clientHeader(0xA1, 300, false), header{}, "reserved bits set"},
		{"RSV3", clientHeader(0x91, 70000, false), header{}, "reserved bits set"},
		{"opcode 3", clientHeader(0x83, 0, false), header{}, "unknown opcode 3"},
		{"opcode 11", clientHeader(0x8B, 0, false), header{}, "unknown opcode 11"},
		{"unmasked", appendHeader(nil, opText, 2), header{}, "client frames must be masked"},
		{"fragmented ping", clientHeader(0x09, 0, false), header{}, "fragmented control frame"},
		{"126-byte close", clientHeader(0x88, 126, false), header{}, "control frame over 125 bytes"},
		{"length with the top bit set", append([]byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0}, 1, 2, 3, 4), header{}, "frame length out of range"},
		{"empty", nil, header{}, "EOF"},
		{"cut in the extended length", []byte{0x81, 0xFE, 0x01}, header{}, "EOF"},
		{"cut in the mask", []byte{0x81, 0x85, 1, 2}, header{}, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readHeader(bufio.NewReader(bytes.NewReader(tt.in)))
			switch {
			case tt.wantErr == "EOF":
				if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("readHeader(% x) error %v; want EOF", tt.in, err)
				}
			case tt.wantErr != "":
				var pe protocolError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("readHeader(% x) error %v; want protocol error %q", tt.in, err, tt.wantErr)
				}
			case err != nil:
				t.Errorf("readHeader(% x) error %v", tt.in, err)
			case got != tt.want:
				t.Errorf("readHeader(% x) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		in       []byte
		code     int
		reason   string
		protoErr bool
	}{
		{nil, CloseNoStatus, "", false},
		{[]byte{0x03, 0xE8}, 1000, "", false},
		{append([]byte{0x03, 0xE9}, "tab closed"...), 1001, "tab closed", false},
		{[]byte{0x0F, 0xA0}, 4000, "", false},
		{[]byte{0x03}, 0, "", true},
		{[]byte{0x03, 0xED}, 0, "", true}, // 1005 may not be sent
		{[]byte{0x03, 0xEE}, 0, "", true}, // nor 1006
		{[]byte{0x03, 0xF7}, 0, "", true}, // 1015 is reserved too
		{[]byte{0x0B, 0xB7}, 0, "", true}, // 2999
		{append([]byte{0x03, 0xE8}, 0xff), 0, "", true},
	}
	for _, tt := range tests {
		code, reason, err := parseClose(tt.in)
		if (err != nil) != tt.protoErr || code != tt.code || reason != tt.reason {
			t.Errorf("parseClose(% x) = %d, %q, %v; want %d, %q, error %v", tt.in, code, reason, err, tt.code, tt.reason, tt.protoErr)
		}
	}
}

// TestServerFramesParse encodes frames with appendHeader and appendClose
// and reads them back with gorilla's client, which checks them against RFC
// 6455: every length form, and a reason long enough to be cut.
func TestServerFramesParse(t *testing.T) {
	p := dialPair(t, testConfig(), false)
	var buf []byte
	sizes := []int{0, 1, 125, 126, 65535, 65536, 100000}
	for _, n := range sizes {
		buf = appendHeader(buf, opText, n)
		buf = append(buf, bytes.Repeat([]byte{'a'}, n)...)
	}
	long := strings.Repeat("é", 80) // 160 bytes: more than a close frame has room for
	buf = appendClose(buf, 4000, long)
	go p.conn.raw.Write(buf)
	for _, n := range sizes {
		if got := readFrame(t, p.client); len(got) != n {
			t.Errorf("frame of %d bytes read back as %d", n, len(got))
		}
	}
	ce := closeFrame(t, p.client)
	if ce.Code != 4000 || !strings.HasPrefix(long, ce.Text) || len(ce.Text) < 120 || !utf8.ValidString(ce.Text) {
		t.Errorf("close %d with a %d-byte reason %q; want 4000 and the reason cut to fit, at a character boundary",
			ce.Code, len(ce.Text), ce.Text)
	}
	p.conn.raw.Close()
}

// quietConn is a socket stand-in whose deadlines cost nothing, for
// counting the reader's own allocations.
type quietConn struct{ net.Conn }

func (quietConn) SetReadDeadline(time.Time) error { return nil }

// TestControlFramesAllocNothing: reading a frame header and a ping or
// pong allocates nothing, so a connection's heartbeat leaves no garbage
// (at tens of thousands of idle connections it would show in RSS). Only
// the pong owed for a ping is copied, once, into the connection.
func TestControlFramesAllocNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("counts allocations; the race detector adds its own (CI runs this without -race)")
	}
	for _, op := range []byte{0x8A, 0x89} { // pong, ping
		const n = 200
		var stream []byte
		for range n + 10 {
			stream = append(stream, masked(op, []byte("hb"))...)
		}
		c := newConn(quietConn{}, bufio.NewReader(bytes.NewReader(stream)), testConfig())
		// A ping starts a writer for its pong; closing keeps the writer (a
		// goroutine) out of the count, and leaves the reading measured.
		c.closing = op == 0x89
		c.readOne()
		allocs := testing.AllocsPerRun(n, func() {
			if stop, d, err := c.readOne(); stop {
				t.Fatalf("readOne stopped: %+v %v", d, err)
			}
		})
		if allocs != 0 {
			t.Errorf("reading control frame %#x allocates %v times; want 0", op, allocs)
		}
	}
}
