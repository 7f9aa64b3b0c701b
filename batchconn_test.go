package main

import (
	"net"
	"sync/atomic"
	"testing"
)

// countingConn counts Write calls on the real socket.
type countingConn struct {
	net.Conn
	n atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.n.Add(1)
	return c.Conn.Write(p)
}

func TestBatchConnHoldsWritesUntilFlush(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	counter := &countingConn{Conn: a}
	bc := &batchConn{Conn: counter}

	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 64)
		n, _ := b.Read(buf)
		got <- string(buf[:n])
	}()

	bc.hold()
	for _, s := range []string{"one ", "two ", "three"} {
		if n, err := bc.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if n := counter.n.Load(); n != 0 {
		t.Fatalf("%d socket writes while holding; want 0", n)
	}
	if err := bc.flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("%d socket writes after flush; want 1", n)
	}
	if s := <-got; s != "one two three" {
		t.Errorf("peer read %q; want %q", s, "one two three")
	}
	if err := bc.flush(); err != nil {
		t.Errorf("second flush: %v", err)
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("flush without hold wrote: %d writes; want 1", n)
	}
}

func TestBatchConnPassesThroughOutsideHold(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	counter := &countingConn{Conn: a}
	bc := &batchConn{Conn: counter}
	go func() {
		buf := make([]byte, 8)
		b.Read(buf)
	}()
	if _, err := bc.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	if n := counter.n.Load(); n != 1 {
		t.Errorf("%d socket writes; want 1 (pass-through)", n)
	}
}
