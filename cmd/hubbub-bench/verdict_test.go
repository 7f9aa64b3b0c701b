package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJudge applies thresholds to report values and checks each verdict:
// which checks pass, and that a failure says what failed.
func TestJudge(t *testing.T) {
	// clean is a report of a run where everything went well.
	clean := func() *Report {
		return &Report{Clients: 100, Senders: 10, ConnOK: 100, Expected: 1000, Received: 1000, DeliveryRatio: 1,
			Latency: LatencyStats{Count: 1000, P99: 20}}
	}
	pct := func(p float64) FailureLimit { return FailureLimit{Pct: p, Percent: true} }
	tests := []struct {
		name string
		mod  func(*Report)
		th   Thresholds
		// wantFail lists the checks that must fail; all others must pass.
		wantFail []string
		// wantDetail must appear in the failed checks' text.
		wantDetail string
	}{
		{name: "clean run, defaults", mod: func(*Report) {}},
		{name: "one failed dial fails by default", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 99, 1; r.FirstConnError = "dial x: refused" },
			wantFail: []string{"conn_failures"}, wantDetail: "first error: dial x: refused"},
		{name: "unexpected close counts", mod: func(r *Report) { r.UnexpectedCloses = map[string]int64{"1013 slow consumer": 2} },
			wantFail: []string{"conn_failures"}, wantDetail: "2 unexpected closes"},
		{name: "not attempted counts", mod: func(r *Report) { r.ConnOK = 97 },
			wantFail: []string{"conn_failures"}, wantDetail: "3 not attempted"},
		{name: "churn redial failures count once", mod: func(r *Report) { r.ConnFailed, r.ReconnectFailed = 2, 2 },
			th: Thresholds{MaxConnFailures: FailureLimit{N: 1}}, wantFail: []string{"conn_failures"}, wantDetail: "2 connection failures (2 failed dials, 0 not attempted"},
		{name: "count limit met", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 98, 2 }, th: Thresholds{MaxConnFailures: FailureLimit{N: 2}}},
		{name: "count limit exceeded", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 97, 3 }, th: Thresholds{MaxConnFailures: FailureLimit{N: 2}},
			wantFail: []string{"conn_failures"}, wantDetail: "more than the 2 allowed"},
		{name: "percent limit met", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 99, 1 }, th: Thresholds{MaxConnFailures: pct(1)}},
		{name: "percent limit exceeded", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 98, 2 }, th: Thresholds{MaxConnFailures: pct(1)},
			wantFail: []string{"conn_failures"}},
		{name: "no limit", mod: func(r *Report) { r.ConnOK, r.ConnFailed = 0, 100 }, th: Thresholds{MaxConnFailures: FailureLimit{N: -1}}},
		{name: "nothing connected", mod: func(r *Report) { r.ConnOK, r.ConnFailed, r.FirstConnError = 0, 10, "connection refused" },
			wantFail: []string{"conn_failures"}, wantDetail: "no connection opened at all"},
		{name: "delivery at the limit", mod: func(r *Report) { r.Received, r.DeliveryRatio = 990, 0.99 }, th: Thresholds{MinDelivery: 0.99}},
		{name: "delivery below", mod: func(r *Report) { r.Received, r.DeliveryRatio = 950, 0.95 }, th: Thresholds{MinDelivery: 0.99},
			wantFail: []string{"delivery_ratio"}, wantDetail: "delivery ratio 0.9500 (950 of 1000), below -min-delivery 0.99"},
		{name: "delivery not checked", mod: func(r *Report) { r.DeliveryRatio = 0.1 }},
		{name: "nothing expected fails delivery", mod: func(r *Report) { r.Expected, r.Received, r.DeliveryRatio = 0, 0, 0 },
			th: Thresholds{MinDelivery: 0.5}, wantFail: []string{"delivery_ratio"}},
		{name: "p99 at the limit", mod: func(*Report) {}, th: Thresholds{MaxP99: 20 * time.Millisecond}},
		{name: "p99 above", mod: func(r *Report) { r.Latency.P99 = 20.5 }, th: Thresholds{MaxP99: 20 * time.Millisecond},
			wantFail: []string{"p99_ms"}, wantDetail: "p99 latency 20.500 ms, above -max-p99 20ms"},
		{name: "p99 without messages", mod: func(r *Report) { r.Latency = LatencyStats{} }, th: Thresholds{MaxP99: time.Second},
			wantFail: []string{"p99_ms"}, wantDetail: "no latency measured"},
		{name: "p99 not checked", mod: func(r *Report) { r.Latency.P99 = 1e6 }},
		{name: "interrupted", mod: func(r *Report) { r.Interrupted = true }, wantFail: []string{"complete"}, wantDetail: "interrupted"},
		{name: "everything fails", mod: func(r *Report) {
			r.ConnFailed, r.DeliveryRatio, r.Latency.P99, r.Interrupted = 1, 0.5, 100, true
		}, th: Thresholds{MinDelivery: 0.9, MaxP99: 50 * time.Millisecond},
			wantFail: []string{"conn_failures", "delivery_ratio", "p99_ms", "complete"}},
	}
	for _, tt := range tests {
		r := clean()
		tt.mod(r)
		r.finish(tt.th)
		failed := map[string]bool{}
		for _, c := range r.Checks {
			if !c.Pass {
				failed[c.Name] = true
			}
		}
		for _, name := range []string{"conn_failures", "delivery_ratio", "p99_ms", "complete"} {
			want := false
			for _, f := range tt.wantFail {
				want = want || f == name
			}
			if failed[name] != want {
				t.Errorf("%s: check %s failed = %v; want %v (checks %+v)", tt.name, name, failed[name], want, r.Checks)
			}
		}
		if r.Pass != (len(tt.wantFail) == 0) {
			t.Errorf("%s: Pass = %v; want %v", tt.name, r.Pass, len(tt.wantFail) == 0)
		}
		if tt.wantDetail != "" {
			if msg := failedChecks(r.Checks).Error(); !strings.Contains(msg, tt.wantDetail) {
				t.Errorf("%s: failure %q; want it to contain %q", tt.name, msg, tt.wantDetail)
			}
		}
	}
}

func TestFailureLimit(t *testing.T) {
	tests := []struct {
		in          string
		clients     int
		wantAllowed int
		wantOn      bool
		wantString  string
		wantErr     bool
	}{
		{in: "0", clients: 100, wantAllowed: 0, wantOn: true, wantString: "0"},
		{in: "5", clients: 100, wantAllowed: 5, wantOn: true, wantString: "5"},
		{in: "-1", clients: 100, wantOn: false, wantString: "-1", wantAllowed: -1},
		{in: "1%", clients: 100, wantAllowed: 1, wantOn: true, wantString: "1%"},
		{in: "1%", clients: 199, wantAllowed: 1, wantOn: true, wantString: "1%"},
		{in: "0.5%", clients: 1000, wantAllowed: 5, wantOn: true, wantString: "0.5%"},
		{in: " 100% ", clients: 7, wantAllowed: 7, wantOn: true, wantString: "100%"},
		{in: "0%", clients: 50, wantAllowed: 0, wantOn: true, wantString: "0%"},
		{in: "101%", wantErr: true},
		{in: "-1%", wantErr: true},
		{in: "x", wantErr: true},
		{in: "1.5", wantErr: true},
		{in: "", wantErr: true},
	}
	for _, tt := range tests {
		var l FailureLimit
		err := l.Set(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("Set(%q) error = %v; want error: %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		n, on := l.allowed(tt.clients)
		if n != tt.wantAllowed || on != tt.wantOn || l.String() != tt.wantString {
			t.Errorf("%q of %d clients: allowed %d, %v, String %q; want %d, %v, %q",
				tt.in, tt.clients, n, on, l.String(), tt.wantAllowed, tt.wantOn, tt.wantString)
		}
	}
}

// benchArgs are flags for a short small fanout against url, like
// testConfig but through the command line.
func benchArgs(url string, more ...string) []string {
	return append([]string{"-url", url, "-clients", "8", "-senders", "3", "-rate", "20", "-size", "100",
		"-warmup", "200ms", "-duration", "1s", "-drain", "2s"}, more...)
}

// TestExitCodes runs the whole tool through runMain, as main does, and
// checks the exit code and what it says on stderr.
func TestExitCodes(t *testing.T) {
	good := newRelay(t, &relay{flavour: formatJSON})
	lossy := newRelay(t, &relay{flavour: formatJSON, dropEvery: 3})
	tests := []struct {
		name       string
		args       []string
		want       int
		wantStderr string
	}{
		{name: "pass", args: benchArgs(good, "-min-delivery", "1", "-max-p99", "10s"), want: exitPass},
		{name: "delivery below", args: benchArgs(lossy, "-min-delivery", "0.99"), want: exitFail,
			wantStderr: "FAIL: delivery ratio"},
		{name: "p99 above", args: benchArgs(good, "-max-p99", "1ns"), want: exitFail, wantStderr: "above -max-p99 1ns"},
		{name: "loss allowed", args: benchArgs(lossy), want: exitPass},
		{name: "unknown scenario", args: []string{"-scenario", "storm"}, want: exitUsage, wantStderr: "unknown scenario"},
		{name: "bad limit", args: []string{"-max-conn-failures", "lots"}, want: exitUsage, wantStderr: "max-conn-failures"},
		{name: "idle with delivery", args: []string{"-scenario", "idle", "-min-delivery", "0.9"}, want: exitUsage,
			wantStderr: "idle scenario sends none"},
		{name: "delivery above 1", args: []string{"-min-delivery", "1.5"}, want: exitUsage, wantStderr: "-min-delivery"},
		{name: "unwritable report", args: benchArgs(good, "-report", t.TempDir()+"/no/such/dir/out.html"), want: exitUsage,
			wantStderr: "create report"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr strings.Builder
			got := runMain(context.Background(), tt.args, &stdout, &stderr)
			t.Log("stderr:\n" + stderr.String() + "stdout:\n" + stdout.String())
			if got != tt.want {
				t.Errorf("runMain(%q) = %d; want %d\nstdout:\n%s", tt.args, got, tt.want, stdout.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q; want it to contain %q", stderr.String(), tt.wantStderr)
			}
			if tt.want != exitUsage && !strings.Contains(stdout.String(), "verdict      "+verdictWord(tt.want == exitPass)) {
				t.Errorf("stdout has no verdict %s:\n%s", verdictWord(tt.want == exitPass), stdout.String())
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, exitPass},
		{failedChecks{{Name: "p99_ms"}}, exitFail},
		{fmt.Errorf("report: %w", failedChecks{}), exitFail},
		{errors.New("-size 600 must be between"), exitUsage},
	}
	for _, tt := range tests {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("exitCode(%v) = %d; want %d", tt.err, got, tt.want)
		}
	}
}
