package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodeWSClient runs scripts/clients/ws-chat.cjs, which talks to the
// server through the `ws` package from npm: a third-party client's view of
// join, chat, /who, /join and /quit in text format. It needs node and the
// package, which scripts/ci-clients.sh installs under .ci-node; without
// them the test is skipped.
func TestNodeWSClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	modules, err := filepath.Abs(filepath.Join(".ci-node", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(modules, "ws", "package.json")); err != nil {
		t.Skip("npm package ws not installed (bash scripts/ci-clients.sh, or npm install --prefix .ci-node ws)")
	}
	s := newTestServer(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("scripts", "clients", "ws-chat.cjs"),
		"ws"+strings.TrimPrefix(s.ts.URL, "http"))
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	out, err := cmd.CombinedOutput()
	t.Logf("node: %s", out)
	if err != nil {
		t.Fatalf("ws client failed: %v", err)
	}
	if !strings.Contains(string(out), "ws client: ok") {
		t.Errorf("ws client did not report success")
	}
}
