package main

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsCluster is n nats-servers routed into one JetStream cluster, each
// with its own store, on ports that stay theirs across a restart: either
// in-process servers or processes of a nats-server binary.
type natsCluster struct {
	t    *testing.T
	bin  string // the nats-server binary; "": in-process servers
	opts []server.Options
	srvs []*server.Server // in-process: nil while stopped
	cmds []*exec.Cmd      // binary: nil while stopped
}

// startNATSCluster starts n in-process servers and waits until JetStream
// has a meta leader that every server follows.
func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	return newNATSCluster(t, "", n)
}

// startNATSBinaryCluster is startNATSCluster with processes of bin.
func startNATSBinaryCluster(t *testing.T, bin string, n int) *natsCluster {
	t.Helper()
	return newNATSCluster(t, bin, n)
}

func newNATSCluster(t *testing.T, bin string, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, bin: bin, opts: make([]server.Options, n), srvs: make([]*server.Server, n), cmds: make([]*exec.Cmd, n)}
	routes := make([]string, n)
	for i := range n {
		c.opts[i] = server.Options{
			ServerName: "s" + strconv.Itoa(i+1),
			Host:       "127.0.0.1", Port: stablePort(t),
			JetStream: true, StoreDir: t.TempDir(),
			Cluster: server.ClusterOpts{Name: "hub", Host: "127.0.0.1", Port: stablePort(t)},
			NoLog:   true, NoSigs: true,
		}
		routes[i] = "nats://127.0.0.1:" + strconv.Itoa(c.opts[i].Cluster.Port)
	}
	for i := range n {
		c.opts[i].Routes = server.RoutesFromStr(strings.Join(routes, ","))
	}
	t.Cleanup(func() {
		for i := range n {
			if c.srvs[i] != nil || c.cmds[i] != nil {
				c.stop(i)
			}
		}
	})
	for i := range n {
		c.start(i)
	}
	c.waitJetStream()
	c.waitPlacement(n)
	return c
}

// waitPlacement waits until JetStream can place a stream on n servers:
// until every server has joined the meta group, not just a quorum of them.
func (c *natsCluster) waitPlacement(n int) {
	c.t.Helper()
	nc, err := nats.Connect(c.urls())
	if err != nil {
		c.t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	name := "probe" + newEpoch()[:8]
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Replicas: n, Storage: jetstream.MemoryStorage})
		if err == nil {
			err = js.DeleteStream(ctx, name)
		}
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("JetStream cannot place a stream on %d servers after 30s: %v", n, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stablePort returns a free loopback port below Linux's ephemeral range
// (32768 and up), so that no outgoing connection takes it between now and
// a server's listening on it, or between a stop and a restart.
func stablePort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(12000)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatal("no free port in 20000-31999 after 100 tries")
	return 0
}

// start starts server i with its options.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	if c.bin != "" {
		c.startBinary(i)
		return
	}
	o := c.opts[i] // NewServer keeps and changes its options: give it a copy
	s, err := server.NewServer(&o)
	if err != nil {
		c.t.Fatalf("nats server %d: %v", i+1, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		c.t.Fatalf("nats server %d not ready within 10s", i+1)
	}
	c.srvs[i] = s
}

// startBinary runs server i as a process of the nats-server binary.
func (c *natsCluster) startBinary(i int) {
	c.t.Helper()
	o := c.opts[i]
	var routes []string
	for _, r := range o.Routes {
		routes = append(routes, r.String())
	}
	cmd := exec.Command(c.bin, "-a", o.Host, "-p", strconv.Itoa(o.Port), "-n", o.ServerName,
		"-js", "-sd", o.StoreDir, "--cluster_name", o.Cluster.Name,
		"--cluster", "nats://"+o.Cluster.Host+":"+strconv.Itoa(o.Cluster.Port), "--routes", strings.Join(routes, ","))
	cmd.Stderr = tWriter{c.t}
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", c.bin, err)
	}
	c.cmds[i] = cmd
	url := "nats://127.0.0.1:" + strconv.Itoa(o.Port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		nc, err := nats.Connect(url, nats.Timeout(time.Second))
		if err == nil {
			nc.Close()
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("nats-server %d on %s not reachable within 10s: %v", i+1, url, err)
		}
	}
}

// stop ends server i. An in-process server shuts down, as a process told
// to exit would; a binary's process is killed (SIGKILL), as a crash would
// end it, with no chance to hand over what it leads.
func (c *natsCluster) stop(i int) {
	if c.bin != "" {
		c.cmds[i].Process.Kill()
		c.cmds[i].Wait()
		c.cmds[i] = nil
		return
	}
	stopNATS(c.srvs[i])
	c.srvs[i] = nil
}

// waitJetStream waits until the running servers have a JetStream meta
// leader and every one of them is current with it (for a binary: until
// every running server answers a JetStream request).
func (c *natsCluster) waitJetStream() {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !c.jetStreamUp() {
		if time.Now().After(deadline) {
			c.t.Fatal("the NATS cluster has no JetStream meta leader after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *natsCluster) jetStreamUp() bool {
	if c.bin == "" {
		leader, current := false, true
		for _, s := range c.srvs {
			if s == nil {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		return leader && current
	}
	for i, cmd := range c.cmds {
		if cmd == nil {
			continue
		}
		nc, err := nats.Connect("nats://127.0.0.1:"+strconv.Itoa(c.opts[i].Port), nats.Timeout(time.Second))
		if err != nil {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		js, _ := jetstream.New(nc)
		_, err = js.AccountInfo(ctx)
		cancel()
		nc.Close()
		if err != nil {
			return false
		}
	}
	return true
}

// urls is every server's client URL, comma-separated, as -nats-url takes
// them.
func (c *natsCluster) urls() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, "nats://127.0.0.1:"+strconv.Itoa(o.Port))
	}
	return strings.Join(u, ",")
}

// streamReplicas returns how many servers keep stream and how many of
// those are current, as the stream's leader reports them.
func streamReplicas(t *testing.T, js jetstream.JetStream, stream string) (peers, current int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info := st.CachedInfo()
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return info.Config.Replicas, 0
	}
	current = 1 // the leader
	for _, r := range info.Cluster.Replicas {
		if r.Current && !r.Offline {
			current++
		}
	}
	return info.Config.Replicas, current
}

// testJetStream connects to url for the test's own look at JetStream.
func testJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReplicasChoice: a node chooses 3 replicas for its streams and
// bucket when the NATS cluster can place them, 1 when it cannot or is one
// server, and what -nats-replicas says when it is set; and it logs why.
func TestReplicasChoice(t *testing.T) {
	one := startNATS(t, server.RANDOM_PORT, t.TempDir())
	two := startNATSCluster(t, 2)
	three := startNATSCluster(t, 3)
	tests := []struct {
		name     string
		url      string
		flag     int
		want     int
		logSays  string
		logLevel string
	}{
		{"one server", one.ClientURL(), 0, 1, "NATS server is not clustered", "INFO"},
		{"two servers", two.urls(), 0, 1, "cannot place 3 replicas", "WARN"},
		{"three servers", three.urls(), 0, 3, "NATS cluster places 3 replicas", "INFO"},
		{"three servers, flag 1", three.urls(), 1, 1, "set by -nats-replicas", "INFO"},
		{"three servers, flag 2", three.urls(), 2, 2, "set by -nats-replicas", "INFO"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := &logBuffer{t: t}
			b, err := newNATSBroker(natsOptions{URL: tt.url, Prefix: "r" + strconv.Itoa(i) + newEpoch()[:8], Node: "n",
				History: brokerHistory, Replicas: tt.flag, Log: slog.New(slog.NewTextHandler(log, nil))})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			st, err := b.ensureStream(context.Background(), "lobby")
			if err != nil {
				t.Fatalf("stream: %v", err)
			}
			if got := st.CachedInfo().Config.Replicas; got != tt.want {
				t.Errorf("stream has %d replicas; want %d", got, tt.want)
			}
			kv, err := b.bucket(context.Background())
			if err != nil {
				t.Fatalf("bucket: %v", err)
			}
			status, err := kv.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if got := status.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; got != tt.want {
				t.Errorf("bucket has %d replicas; want %d", got, tt.want)
			}
			var line string
			for l := range strings.Lines(log.String()) {
				if strings.Contains(l, tt.logSays) {
					line = l
				}
			}
			if line == "" {
				t.Fatalf("no log line says %q; the log:\n%s", tt.logSays, log.String())
			}
			if !strings.Contains(line, "level="+tt.logLevel) || !strings.Contains(line, "replicas="+strconv.Itoa(tt.want)) {
				t.Errorf("log line %q; want level %s and replicas=%d", line, tt.logLevel, tt.want)
			}
		})
	}
}

// TestReplicasOnlyRise: a node that chose fewer replicas than a stream
// has (it started while the NATS cluster was short of servers) leaves the
// stream as it is, and one that chose more raises it; -nats-replicas sets
// the count either way.
func TestReplicasOnlyRise(t *testing.T) {
	c := startNATSCluster(t, 3)
	prefix := "up" + newEpoch()[:8]
	open := func(flag, chosen int) *natsBroker {
		b, err := newNATSBroker(natsOptions{URL: c.urls(), Prefix: prefix, Node: "n", History: brokerHistory, Replicas: flag})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		if chosen > 0 {
			b.repl = chosen // as if the cluster had been short when it chose
		}
		return b
	}
	js := testJetStream(t, c.urls())
	steps := []struct {
		what         string
		flag, chosen int
		want         int
	}{
		{"a node that chose 1 creates the stream", 0, 1, 1},
		{"a node that chose 3 raises it", 0, 0, 3},
		{"a node that chose 1 leaves it at 3", 0, 1, 3},
		{"-nats-replicas 1 lowers it", 1, 0, 1},
	}
	for _, s := range steps {
		b := open(s.flag, s.chosen)
		if _, err := b.ensureStream(context.Background(), "lobby"); err != nil {
			t.Fatalf("%s: %v", s.what, err)
		}
		if got, _ := streamReplicas(t, js, prefix+"_room_lobby"); got != s.want {
			t.Errorf("%s: the stream has %d replicas; want %d", s.what, got, s.want)
		}
	}
}

// TestConfigNATSReplicas: the flag takes 0 to 5, and says what it wants
// otherwise.
func TestConfigNATSReplicas(t *testing.T) {
	for _, n := range []int{-1, 6} {
		c := DefaultConfig()
		c.NATSReplicas = n
		err := c.validate()
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("nats-replicas %d: want 0", n)) {
			t.Errorf("NATSReplicas %d: %v; want the flag's range", n, err)
		}
	}
	for n := range 6 {
		c := DefaultConfig()
		c.NATSReplicas = n
		if err := c.validate(); err != nil {
			t.Errorf("NATSReplicas %d: %v", n, err)
		}
	}
}
