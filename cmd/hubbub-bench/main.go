// Command hubbub-bench is a load generator for hubbub and for any WebSocket
// chat server that relays text frames to the members of a room.
//
// It opens many client connections from one process, makes some of them send
// chat messages at a fixed rate, and measures on every receiving connection
// which messages arrive, how often, and how late. It reports delivery ratio,
// duplicates, latency percentiles from an HDR histogram, throughput,
// coalescing, unexpected closes by close code and, given the server's pid,
// the server's memory per connection and CPU use.
//
// # Usage
//
//	go run ./cmd/hubbub-bench [flags]
//
// -h (or -help) prints the scenarios, the exit codes and every flag on
// stdout and exits 0.
//
// Every message carries its own id and send time in the chat text:
//
//	hb1 <sender>-<seq> <unixnano> xxxxxxxx…   (padded to -size bytes)
//
// Receivers find that marker wherever it appears in a line, so the tool works
// with hubbub's JSON format (NDJSON new_message events, several per frame),
// hubbub's text format ("[room] name: hb1 …"), plain relays such as the
// gorilla/websocket chat example, which forwards the bare text and joins
// queued messages with '\n' in one frame, and Centrifugo, whose publication
// pushes carry the text as {"text":"hb1 …"}. Latency is receive time minus
// the send time in the marker; both ends are this process, so no clock sync
// is needed.
//
// A run has phases: connect (at -ramp per second), wait until the server
// confirmed every join (not with -proto raw), warm up for -warmup with the senders already running, measure
// for -duration, drain for at most -drain until every expected delivery
// arrived, then close every connection with a close frame (bounded in time).
// Only messages sent inside the measurement window count. For each of them
// the sender adds the number of this process's clients in its room at send
// time (itself included, as the server echoes it) to "expected".
//
// When nothing connects, the run stops early: the connect phase gives up
// once its first 10 dials (or all, if fewer) have failed with none
// succeeding, instead of pacing the rest into the same refusal (a dial
// fails within the 10 s dial timeout), and without a connection the tool
// skips warmup, window and drain, reports the first dial error and exits 1.
//
// The target must be loopback (127.0.0.0/8, ::1 or localhost); the tool
// refuses anything else unless -allow-remote is given, and then warns that
// it must only be pointed at servers you own. Output is a human-readable
// report on stdout, or JSON with -json. On a terminal, a progress line is
// redrawn on stderr each second. -report out.html also writes a page that
// needs no network: the run's metadata (tool version, start time, flags
// with secrets redacted, target), the verdict, and inline SVG charts of
// latency and deliveries per second, the latency distribution by
// percentile, and the server's (with -server-pid) and the tool's CPU and
// RSS over the whole run.
//
// # Scenarios
//
// fanout: all -clients in one room; the first -senders of them send -rate
// messages per second each. Every message is delivered to every client, so it
// measures broadcast cost.
//
//	go run ./cmd/hubbub-bench -scenario fanout -clients 1000 -senders 10 -rate 10 -duration 30s
//
// rooms: -clients spread round robin over -rooms rooms; in each room the first
// -senders clients send. It measures routing many small rooms.
//
//	go run ./cmd/hubbub-bench -scenario rooms -clients 5000 -rooms 100 -senders 2 -rate 5
//
// idle: hold -clients connections for -duration and send nothing; with
// -server-pid it reports the server's RSS growth per connection (and the
// tool's own).
//
//	go run ./cmd/hubbub-bench -scenario idle -clients 10000 -ramp 2000 -server-pid $(pgrep -n hubbub)
//
// churn: like rooms (default one room), and meanwhile -churn-rate times a
// second one non-sending client hangs up and reconnects under a new name.
// Clients that leave or join while a message is in flight make the delivery
// ratio a little fuzzy here; the count of unexpected closes is the main
// result.
//
//	go run ./cmd/hubbub-bench -scenario churn -clients 500 -senders 5 -rate 10 -churn-rate 50
//
// # Other servers
//
// -proto picks the client protocol. With hubbub (the default) the tool adds
// hubbub's room=, name= and format= query parameters and waits for hubbub's
// first frame to know a client joined. With raw (or -raw, its older
// spelling) it adds no parameters, sends plain text, and counts a client as
// joined once its handshake is done, which fits simple relays:
//
//	go run ./cmd/hubbub-bench -raw -url ws://127.0.0.1:8080/ws -clients 200 -senders 5 -rate 10 -duration 5s
//
// With centrifugo it speaks Centrifugo's bidirectional JSON client protocol:
// each client sends an anonymous connect command, then subscribes to one
// channel named like the room ("bench", "bench-3"), and counts as joined
// when the subscribe reply arrives. Senders publish {"text":"hb1 …"} into
// their room's channel; receivers read the marker from the publication
// pushes, several of which Centrifugo batches into one frame. Server pings
// ({}) are answered with a pong, as Centrifugo disconnects clients that
// miss one. -format is ignored. The server must let anonymous clients
// connect, subscribe and publish: in Centrifugo v6's config that is
// client.allow_anonymous_connect_without_token, and
// allow_subscribe_for_anonymous and allow_publish_for_anonymous under
// channel.without_namespace. Against Centrifugo on its default port:
//
//	go run ./cmd/hubbub-bench -proto centrifugo -url ws://127.0.0.1:8000/connection/websocket -clients 200 -senders 5 -rate 10 -duration 5s
//
// # Logging in
//
// Against hubbub started with -auth login, -login user:password makes
// every connection, churn's redials included, POST {"username","password"}
// to /login on the target's host (http for ws, https for wss) just before
// it dials, and put the single-use ticket it gets in ticket=. A single
// -ticket lets one connection in, as the server refuses it the second
// time. Each login costs the server a bcrypt check (tens of milliseconds
// of CPU at the default cost), so connecting is slower than for guests;
// a users file hashed with hubbub hash-password -cost 4 keeps that small.
// All connections are the same user, so hubbub gives all but one of them
// a free variant of the name and says so with a name_taken event, which
// the report counts under server errors.
//
// Against -auth jwt, -jwt-secret KEY (the server's secret) mints an HS256
// token per connection with sub set to the client's name (hb<index>-<n>,
// unique per connection) and exp five minutes ahead, and puts it in
// ticket=. Tickets and tokens are left out of every error and report.
//
//	go run ./cmd/hubbub-bench -login bench:secret -clients 200 -ramp 100
//	go run ./cmd/hubbub-bench -jwt-secret "$HUBBUB_JWT_SECRET" -clients 1000
//
// # Scaling
//
// One process keeps a goroutine, a socket and its read buffer (-read-buffer)
// per connection, and drives all senders from a few pacing goroutines, so
// about 10k connections per process are fine. The soft open-file limit is
// raised to the hard limit at start; past it, dials fail and the tool stops
// ramping with "hit the open-file limit (N): run several processes with
// -shard". Run shards side by side, each taking every n-th client index:
//
//	go run ./cmd/hubbub-bench -shard 0/2 -clients 30000 -source-ips 127.0.0.1-127.0.0.8 -json > s0.json &
//	go run ./cmd/hubbub-bench -shard 1/2 -clients 30000 -source-ips 127.0.0.1-127.0.0.8 -json > s1.json
//
// Each shard reports its own clients. Its delivery ratio covers its own
// senders' messages to its own receivers (exact, and a fair sample of the
// whole); received_all adds messages from other shards' senders. -source-ips
// spreads source addresses so that many connections to one server port do
// not run out of ephemeral ports (about 28k per source address).
//
// # Pass or fail
//
// Every run ends with a verdict, printed in the report and given as the
// exit code: 0 when every check passed, 1 when one failed, 2 for bad flags
// or a run that could not be set up or reported. The checks:
//
//   - connection failures: failed dials (churn's redials included), planned
//     connections never dialled, and unexpected closes, together at most
//     -max-conn-failures: a count, or a percentage of the shard's clients
//     such as 1%. Default 0, so any failure fails the run; negative turns
//     the check off.
//   - delivery ratio at least -min-delivery (0 to 1; default 0, off).
//   - p99 latency at most -max-p99 (default 0, off); a run that measured no
//     latency fails it.
//   - the run was not interrupted by a signal.
//
// With -shard, each process judges its own shard.
//
// # Flags
//
//	-scenario fanout|rooms|idle|churn  what to run (fanout)
//	-url ws://127.0.0.1:8080/ws        WebSocket endpoint, loopback unless -allow-remote
//	-allow-remote                      allow a non-loopback -url and -source-ips (servers you own only)
//	-proto hubbub|raw|centrifugo       client protocol (hubbub)
//	-raw                               same as -proto raw: plain text, no query params, no join wait
//	-format json|text                  hubbub wire format (json); -proto hubbub only
//	-clients N                         connections over all shards (100)
//	-senders N                         senders: total for fanout, per room otherwise (1)
//	-rate R                            messages per second per sender (1)
//	-duration D                        measurement window, or hold time for idle (10s)
//	-warmup D                          sending before the window opens (2s)
//	-drain D                           longest wait for late messages (3s)
//	-size N                            chat text bytes, marker included (128; frame limit 512 for every protocol)
//	-rooms K                           rooms for rooms (10) and churn (1)
//	-ramp R                            new connections per second, 0 = unpaced (0)
//	-churn-rate R                      hang-ups and redials per second in churn (10)
//	-source-ips A-B,C                  source addresses, round robin (loopback unless -allow-remote)
//	-server-pid PID                    server to read RSS and CPU from /proc
//	-read-buffer N                     read buffer per connection (512 idle, 16384 otherwise)
//	-max-conn-failures N|P%            connection failures that pass (0); negative: no limit
//	-min-delivery R                    lowest delivery ratio that passes (0: off)
//	-max-p99 D                         highest p99 latency that passes (0: off)
//	-ticket T                          add ticket=T to every URL (a hubbub ticket lets one connection in)
//	-login user:password               a ticket per connection from POST /login
//	-jwt-secret KEY                    an HS256 token per connection, sub = client name
//	-header "Name: value"              extra handshake header, repeatable
//	-shard i/n                         take every n-th client index from i (0/1)
//	-json                              JSON report on stdout
//	-report out.html                   self-contained HTML page: metadata, verdict, charts
//	-v                                 debug logging
//	-cpuprofile FILE                   the tool's own CPU profile: is it the bottleneck?
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/term"
)

// version is stamped at build time with -ldflags "-X main.version=…", as
// for hubbub itself.
var version = "dev"

// toolVersion is version plus the VCS revision go build recorded, if it
// did (go run and go test record none), for the report's metadata.
func toolVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = ", modified"
		}
	}
	if rev == "" {
		return version
	}
	return version + " (" + rev[:min(12, len(rev))] + dirty + ")"
}

func main() {
	os.Exit(runMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// runMain runs the tool and returns its exit code (see exitPass and the
// others), printing any error on stderr.
func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := run(ctx, args, stdout, stderr)
	code := exitCode(err)
	if code != exitPass {
		fmt.Fprintln(stderr, "hubbub-bench:", err)
	}
	return code
}

// options is what the command line sets: the run's Config and what main
// does around the run.
type options struct {
	cfg        Config
	asJSON     bool
	htmlOut    string
	verbose    bool
	cpuProfile string
}

// helpText is the head of -h: what the tool does, its scenarios and its
// exit codes. The flag list follows it.
const helpText = `Usage: hubbub-bench [flags]

hubbub-bench loads a WebSocket chat server with many client connections,
measures which messages arrive and how late, and reports. The target must be
loopback unless -allow-remote is given. More: go doc ./cmd/hubbub-bench

Scenarios (-scenario):
  fanout  all -clients in one room; the first -senders send -rate messages
          per second each, and every message goes to every client: the cost
          of broadcast. The default.
  rooms   -clients spread round robin over -rooms rooms (default 10); the
          first -senders of each room send: routing many small rooms.
  idle    hold -clients connections for -duration and send nothing; with
          -server-pid, the server's RSS growth per connection.
  churn   like rooms (default one room), while -churn-rate times a second a
          non-sending client hangs up and reconnects under a new name; the
          unexpected closes are the main result.

Examples:
  hubbub-bench -scenario fanout -clients 1000 -senders 10 -rate 10 -duration 30s
  hubbub-bench -scenario rooms -clients 5000 -rooms 100 -senders 2 -rate 5
  hubbub-bench -scenario idle -clients 10000 -ramp 2000 -server-pid $(pgrep -n hubbub)
  hubbub-bench -scenario churn -clients 500 -senders 5 -rate 10 -churn-rate 50
  hubbub-bench -min-delivery 1 -max-p99 50ms    (exit 1 if a message was lost or p99 > 50 ms)

Exit status:
  0  every check passed
  1  a check failed: -max-conn-failures, -min-delivery, -max-p99, or the run
     was interrupted; the report says which
  2  bad flags, or the run could not be set up or reported

Flags:
`

// parseArgs reads the command line into options. For -h or -help it
// writes the help to help and returns flag.ErrHelp. Other flag errors are
// returned, not printed, so that main prints each problem once.
func parseArgs(args []string, help io.Writer) (*options, error) {
	o := &options{cfg: defaultConfig()}
	cfg := &o.cfg
	fs := flag.NewFlagSet("hubbub-bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "fanout, rooms, idle or churn (see Scenarios above)")
	fs.StringVar(&cfg.URL, "url", cfg.URL, "WebSocket endpoint (loopback unless -allow-remote)")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a -url and -source-ips other than loopback: only for servers you own")
	fs.StringVar(&cfg.Proto, "proto", cfg.Proto, "client protocol: hubbub, raw (plain text relay) or centrifugo (Centrifugo's JSON protocol)")
	fs.BoolVar(&cfg.Raw, "raw", cfg.Raw, "same as -proto raw: plain text relay, no hubbub query parameters, no join confirmation")
	fs.StringVar(&cfg.Format, "format", cfg.Format, "hubbub format: json or text (-proto hubbub only)")
	fs.IntVar(&cfg.Clients, "clients", cfg.Clients, "client connections over all shards")
	fs.IntVar(&cfg.Senders, "senders", cfg.Senders, "sending clients: total for fanout, per room for rooms and churn")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "messages per second per sender")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "measurement window (hold time for idle)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "time after all connected before measuring")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "longest wait for in-flight messages after the window")
	fs.IntVar(&cfg.Size, "size", cfg.Size, "chat text bytes including the marker")
	fs.IntVar(&cfg.Rooms, "rooms", 0, "rooms (default 10 for rooms, 1 for churn)")
	fs.Float64Var(&cfg.Ramp, "ramp", cfg.Ramp, "new connections per second (0: as fast as possible)")
	fs.Float64Var(&cfg.ChurnRate, "churn-rate", cfg.ChurnRate, "disconnect+reconnect cycles per second (churn)")
	sourceIPs := fs.String("source-ips", "", "source addresses, e.g. 127.0.0.1-127.0.0.8 (loopback unless -allow-remote)")
	fs.IntVar(&cfg.ReadBuffer, "read-buffer", 0, "read buffer per connection in bytes (default 512 for idle, 16384 otherwise)")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server pid: report its RSS per connection and CPU%")
	fs.StringVar(&cfg.Ticket, "ticket", "", "add ticket=VALUE to every connection's URL (a hubbub login ticket works once: see -login)")
	login := fs.String("login", "", "`user:password`: log each connection in with POST /login for its own single-use ticket")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "mint an HS256 token per connection with this `key` (the server's -jwt-secret), sub = the client's name")
	fs.Var(&cfg.Thresholds.MaxConnFailures, "max-conn-failures",
		"at most `N` connection failures pass, or N% of this shard's clients (negative: no limit). "+
			"Failures are failed dials (churn redials too), planned connections never dialled and unexpected closes")
	fs.Float64Var(&cfg.Thresholds.MinDelivery, "min-delivery", cfg.Thresholds.MinDelivery, "lowest delivery ratio that passes, up to 1 (0: not checked)")
	fs.DurationVar(&cfg.Thresholds.MaxP99, "max-p99", cfg.Thresholds.MaxP99, "highest p99 latency that passes, e.g. 50ms (0: not checked)")
	var headers headerFlag
	fs.Var(&headers, "header", `extra handshake header "Name: value" (repeatable)`)
	shard := fs.String("shard", "0/1", "run as shard i of n: take every n-th client index")
	fs.BoolVar(&o.asJSON, "json", false, "print the report as JSON")
	fs.StringVar(&o.htmlOut, "report", "", "write an HTML page of the run to this file: metadata, verdict, latency, CPU and RSS charts")
	fs.BoolVar(&o.verbose, "v", false, "debug logging")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the tool's own CPU profile to this file (is the generator the bottleneck?)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(help, helpText)
			fs.SetOutput(help)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, fmt.Errorf("%w (hubbub-bench -h lists scenarios and flags)", err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q: hubbub-bench takes only flags (-h lists them)", fs.Args())
	}
	var err error
	if *sourceIPs != "" {
		if cfg.SourceIPs, err = parseSourceIPs(*sourceIPs); err != nil {
			return nil, err
		}
	}
	if cfg.Shard, err = parseShard(*shard); err != nil {
		return nil, err
	}
	if *login != "" {
		var ok bool
		cfg.LoginUser, cfg.LoginPassword, ok = strings.Cut(*login, ":")
		if !ok || cfg.LoginUser == "" || cfg.LoginPassword == "" {
			return nil, errors.New("-login: want user:password")
		}
	}
	cfg.Header = headers.h
	cfg.Args = reportedArgs(fs, headers.h)
	return o, nil
}

// reportedArgs lists the flags that were set, in name order, as the
// report's metadata shows them: passwords, tickets, keys and header values
// are replaced by REDACTED, since reports get shared.
func reportedArgs(fs *flag.FlagSet, headers http.Header) []string {
	out := []string{}
	fs.Visit(func(f *flag.Flag) {
		v := f.Value.String()
		switch f.Name {
		case "login":
			user, _, _ := strings.Cut(v, ":")
			v = user + ":REDACTED"
		case "jwt-secret", "ticket":
			v = "REDACTED"
		case "url":
			// A password in the URL's userinfo, should there be one.
			if u, err := url.Parse(v); err == nil {
				v = u.Redacted()
			}
		case "header":
			for _, name := range slices.Sorted(maps.Keys(headers)) {
				out = append(out, "-header="+name+": REDACTED")
			}
			return
		}
		out = append(out, "-"+f.Name+"="+v)
	})
	return out
}

// run parses args, runs the benchmark until done or interrupted, and writes
// the report(s). A run that fails a check returns failedChecks after the
// reports are written.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseArgs(args, stdout)
	if err != nil {
		return err
	}
	cfg := o.cfg
	level := slog.LevelInfo
	if o.verbose {
		level = slog.LevelDebug
	}
	logOut := stderr
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = stderr
		logOut = lineClearer{stderr}
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))

	b, err := newBench(cfg, log)
	if err != nil {
		return err
	}
	// The -report file is created before the run, so that a bad path
	// fails now rather than after a long run.
	var htmlFile *os.File
	if o.htmlOut != "" {
		if htmlFile, err = os.Create(o.htmlOut); err != nil {
			return fmt.Errorf("create report: %w", err)
		}
		defer htmlFile.Close() // a no-op error after writeHTMLFile closed it
	}
	if o.cpuProfile != "" {
		stopProfile, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	// Ctrl-C ends the run early but still closes cleanly and reports.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := b.run(ctx)
	if err != nil {
		return err
	}
	if htmlFile != nil {
		if err := writeHTMLFile(htmlFile, rep); err != nil {
			return err
		}
	}
	if o.asJSON {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Pass {
		return failedChecks(rep.Checks)
	}
	return nil
}

// startCPUProfile profiles this process into path until the returned
// function is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeHTMLFile writes the -report page into f, which createReport
// opened, and closes it.
func writeHTMLFile(f *os.File, rep *Report) error {
	if err := rep.writeHTML(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report %s: %w", f.Name(), err)
	}
	return nil
}

// lineClearer erases the progress line before each log record, so that a log
// line on a terminal does not end up glued to the half-drawn status.
type lineClearer struct{ w io.Writer }

// Write implements io.Writer; slog writes one record per call.
func (c lineClearer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(c.w, "\r\x1b[K"); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
