package wsconn

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"unicode/utf8"
)

// WebSocket frame opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest payload a control frame may carry
// (RFC 6455 section 5.5).
const maxControlPayload = 125

// header is one client frame's header, as read off the wire.
type header struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

// protocolError is a client frame that breaks RFC 6455. Its text becomes
// the reason of the 1002 close frame, so it is written for the person
// debugging the client.
type protocolError string

func (e protocolError) Error() string { return string(e) }

// readHeader reads and checks one frame header from a client. A server
// negotiates no extensions, so reserved bits must be clear; every client
// frame must be masked; control frames must be whole and short.
func readHeader(br *bufio.Reader) (header, error) {
	var h header
	p, err := take(br, 2)
	if err != nil {
		return h, err
	}
	b0, b1 := p[0], p[1]
	h.fin = b0&0x80 != 0
	h.op = b0 & 0x0f
	masked := b1&0x80 != 0
	h.length = int64(b1 & 0x7f)
	switch h.length {
	case 126:
		if p, err = take(br, 2); err != nil {
			return h, err
		}
		h.length = int64(binary.BigEndian.Uint16(p))
	case 127:
		if p, err = take(br, 8); err != nil {
			return h, err
		}
		n := binary.BigEndian.Uint64(p)
		if n > 1<<62 {
			return h, protocolError("frame length out of range")
		}
		h.length = int64(n)
	}
	if masked {
		if p, err = take(br, 4); err != nil {
			return h, err
		}
		copy(h.mask[:], p)
	}
	switch {
	case b0&0x70 != 0:
		return h, protocolError("reserved bits set: no extension was negotiated")
	case h.op > opBinary && h.op < opClose || h.op > opPong:
		return h, protocolError(fmt.Sprintf("unknown opcode %d", h.op))
	case !masked:
		return h, protocolError("client frames must be masked")
	case h.op >= opClose && !h.fin:
		return h, protocolError("fragmented control frame")
	case h.op >= opClose && h.length > maxControlPayload:
		return h, protocolError("control frame over 125 bytes")
	}
	return h, nil
}

// take returns the next n bytes of br, which must fit its buffer, and
// consumes them. The bytes are valid until the next read. Reading through
// bufio's own methods keeps the caller's variables off the heap: a frame
// header then costs no allocation.
func take(br *bufio.Reader, n int) ([]byte, error) {
	p, err := br.Peek(n)
	if err != nil {
		if err == io.EOF && len(p) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	br.Discard(n)
	return p, nil
}

// readPayload appends h's payload, unmasked, to buf.
func readPayload(br *bufio.Reader, h header, buf []byte) ([]byte, error) {
	start := len(buf)
	if h.length <= int64(br.Size()) {
		// Whole from the read buffer: buf, often on the caller's
		// stack, is not handed to the socket's reader.
		p, err := take(br, int(h.length))
		if err != nil {
			return buf, err
		}
		buf = append(buf, p...)
	} else {
		buf = append(buf, make([]byte, h.length)...)
		if _, err := io.ReadFull(br, buf[start:]); err != nil {
			return buf, err
		}
	}
	unmask(buf[start:], h.mask)
	return buf, nil
}

// unmask XORs a client payload with its masking key.
func unmask(p []byte, mask [4]byte) {
	for i := range p {
		p[i] ^= mask[i&3]
	}
}

// parseClose reads a close frame's payload: the code the peer gave, or
// CloseNoStatus for an empty payload.
func parseClose(p []byte) (code int, reason string, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", protocolError("close frame with a 1-byte payload")
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", protocolError(fmt.Sprintf("invalid close code %d", code))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", protocolError("close reason is not UTF-8")
	}
	return code, string(p[2:]), nil
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4 and the IANA registry).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// Close codes with a meaning to this package.
const (
	CloseNormal   = 1000 // the peer or the server said goodbye
	CloseProtocol = 1002 // a frame broke RFC 6455
	CloseNoStatus = 1005 // the peer's close frame had no code (never sent)
	CloseTooBig   = 1009 // a message over the read limit
	CloseInternal = 1011 // the server hit a bug
)

// appendHeader appends the header of an unmasked server frame with
// opcode op and a payload of n bytes.
func appendHeader(b []byte, op byte, n int) []byte {
	b0 := 0x80 | op // FIN: the server never fragments
	switch {
	case n <= 125:
		return append(b, b0, byte(n))
	case n <= 0xffff:
		return append(b, b0, 126, byte(n>>8), byte(n))
	default:
		b = append(b, b0, 127)
		return binary.BigEndian.AppendUint64(b, uint64(n))
	}
}

// appendClose appends a close frame with code and reason. The reason is
// cut, at a character boundary, to what fits a control frame.
func appendClose(b []byte, code int, reason string) []byte {
	const max = maxControlPayload - 2
	if len(reason) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	b = appendHeader(b, opClose, 2+len(reason))
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	return append(b, reason...)
}
