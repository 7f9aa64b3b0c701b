package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// childEnv makes the test binary run a hubbub server instead of tests, so
// that a test can kill a real server process (TestMain checks it). The
// server reads its settings from HUBBUB_* variables, as the binary does.
const childEnv = "HUBBUB_TEST_CHILD"

// runChild serves until SIGTERM and returns the exit code.
func runChild() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, nil, os.Getenv, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 1
	}
	return 0
}

// startChild starts a server process on addr with history in dir and
// waits until it answers /healthz.
func startChild(t *testing.T, addr, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HUBBUB_ADDR="+addr, "HUBBUB_DATA_DIR="+dir,
		"HUBBUB_HISTORY=1000", "HUBBUB_HISTORY_ON_JOIN=1000", "HUBBUB_SEND_QUEUE=4096",
		"HUBBUB_MSG_RATE=0", "HUBBUB_LOG_LEVEL=warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("child server did not come up on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAckedMessagesSurviveSIGKILL streams acked messages at a server with
// -data-dir, kills it with SIGKILL in mid-stream, restarts it on the same
// directory and finds every acked message in the room's history: an ack
// is a promise that the message is on disk. A resend of an acked id after
// the restart is acked as a duplicate.
func TestAckedMessagesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	child := startChild(t, addr, dir)

	u := url.URL{Scheme: "ws", Host: addr, Path: "/ws", RawQuery: "room=k&name=sender"}
	conn, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	acked := map[string]uint64{} // id -> seq
	sent, killed := 0, false
	const window, killAt = 32, 200
	for !killed {
		for sent-len(acked) < window {
			frame := fmt.Sprintf(`{"type":"send_message","id":"k-%d","payload":{"message":"kill %d"}}`, sent, sent)
			if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
				t.Fatalf("write: %v", err)
			}
			sent++
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, data, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("read before the kill: %v", err)
		}
		for line := range strings.SplitSeq(string(data), "\n") {
			var e event
			json.Unmarshal([]byte(line), &e)
			if e.Type != "ack" {
				continue
			}
			var a ackPayload
			json.Unmarshal(e.Payload, &a)
			acked[a.ID] = a.Seq
			if len(acked) >= killAt && !killed {
				// Messages are still in flight: some sent, not acked.
				child.Process.Kill()
				child.Wait()
				killed = true
			}
		}
	}
	conn.Close()
	t.Logf("%d sent, %d acked when SIGKILLed", sent, len(acked))

	startChild(t, addr, dir)
	u.RawQuery = "room=k&name=reader"
	rd, _, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	p := &peer{t: t, conn: rd}
	var h struct {
		Messages []messagePayload `json:"messages"`
	}
	p.skipUntil("history").decode(t, &h)
	kept := map[string]uint64{}
	for _, m := range h.Messages {
		kept[strings.Replace(m.Message, "kill ", "k-", 1)] = m.Seq
	}
	for id, seq := range acked {
		if got, ok := kept[id]; !ok || got != seq {
			t.Errorf("acked %s (seq %d) is not in history after the restart (found seq %d, %v)", id, seq, got, ok)
		}
	}
	// The restart rebuilt the memory of recent ids from disk.
	s, _ := (&peer{t: t}).dialAt(t, "ws://"+addr, "room", "k", "name", "sender")
	s.sendID("kill 0", "k-0")
	if a := s.ack(); !a.Duplicate || a.Seq != acked["k-0"] {
		t.Errorf("resend of k-0 after the restart: ack %+v; want a duplicate of seq %d", a, acked["k-0"])
	}
}

// dialAt connects a peer to the server at base (ws://host:port).
func (*peer) dialAt(t *testing.T, base string, kv ...string) (*peer, *http.Response) {
	t.Helper()
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	conn, resp, err := websocket.DefaultDialer.Dial(base+"/ws?"+q.Encode(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v", base, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &peer{t: t, conn: conn}, resp
}
