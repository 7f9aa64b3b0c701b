package main

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Exit codes of the tool, as main returns them.
const (
	// exitPass: the run finished and every check passed.
	exitPass = 0
	// exitFail: the run finished (or stopped early) and a check failed.
	exitFail = 1
	// exitUsage: bad flags, or the run could not be set up or reported.
	exitUsage = 2
)

// Thresholds are the limits a run must stay within to pass; judge applies
// them to a Report.
type Thresholds struct {
	// MaxConnFailures is the most connection failures (Report.ConnFailures)
	// that pass. Default 0: any failure fails the run.
	MaxConnFailures FailureLimit
	// MinDelivery is the lowest delivery ratio that passes. Default 0: not
	// checked.
	MinDelivery float64
	// MaxP99 is the highest p99 latency that passes. Default 0: not
	// checked.
	MaxP99 time.Duration
}

// check validates the thresholds against the scenario: idle sends nothing,
// so a delivery or latency limit there could only ever fail.
func (th Thresholds) check(scenario string) error {
	if th.MinDelivery < 0 || th.MinDelivery > 1 {
		return fmt.Errorf("-min-delivery %g must be between 0 (off) and 1", th.MinDelivery)
	}
	if th.MaxP99 < 0 {
		return errors.New("-max-p99 must not be negative (0 is off)")
	}
	if scenario == scenarioIdle && (th.MinDelivery > 0 || th.MaxP99 > 0) {
		return errors.New("-min-delivery and -max-p99 need messages, and the idle scenario sends none")
	}
	return nil
}

// FailureLimit is the value of -max-conn-failures: at most N failures, or
// at most Pct percent of the shard's planned clients, rounded down. A
// negative N means no limit.
type FailureLimit struct {
	N       int
	Pct     float64
	Percent bool
}

// String implements flag.Value; Set reads the same form.
func (l *FailureLimit) String() string {
	if l == nil {
		return "0"
	}
	if l.Percent {
		return strconv.FormatFloat(l.Pct, 'f', -1, 64) + "%"
	}
	return strconv.Itoa(l.N)
}

// Set implements flag.Value: "N" or "P%".
func (l *FailureLimit) Set(s string) error {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(p, 64)
		if err != nil || v < 0 || v > 100 || math.IsNaN(v) {
			return fmt.Errorf("%q: want a percentage from 0%% to 100%%", s)
		}
		*l = FailureLimit{Pct: v, Percent: true}
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("%q: want a count (negative: no limit) or a percentage such as 1%%", s)
	}
	*l = FailureLimit{N: n}
	return nil
}

// allowed is how many failures pass among clients planned connections, and
// false when there is no limit.
func (l FailureLimit) allowed(clients int) (int, bool) {
	if l.Percent {
		// The epsilon keeps 1% of 100 at 1 despite float rounding.
		return int(math.Floor(l.Pct*float64(clients)/100 + 1e-9)), true
	}
	return l.N, l.N >= 0
}

// Check is one pass/fail verdict on the run, as the report shows it.
type Check struct {
	// Name is conn_failures, delivery_ratio, p99_ms or complete.
	Name string `json:"name"`
	// Enabled is false when a flag turned the check off; it passes then.
	Enabled bool `json:"enabled"`
	// Limit is the threshold: most failures, lowest ratio, highest p99 in
	// ms; 1 for complete.
	Limit float64 `json:"limit"`
	// Value is what the run measured: 1 for a complete run, 0 otherwise.
	Value float64 `json:"value"`
	Pass  bool    `json:"pass"`
	// Detail says the same in one line for a person.
	Detail string `json:"detail"`
}

// judge applies th to r and returns one Check per threshold, in a fixed
// order. r must have its counts filled in (see Bench.report).
func judge(r *Report, th Thresholds) []Check {
	return []Check{connCheck(r, th.MaxConnFailures), deliveryCheck(r, th.MinDelivery),
		p99Check(r, th.MaxP99), completeCheck(r)}
}

// connCheck compares Report.ConnFailures with -max-conn-failures.
func connCheck(r *Report, l FailureLimit) Check {
	c := Check{Name: "conn_failures", Value: float64(r.ConnFailures)}
	what := fmt.Sprintf("%d connection failures (%d failed dials, %d not attempted, %d unexpected closes)",
		r.ConnFailures, r.ConnFailed, r.NotAttempted, sumCounts(r.UnexpectedCloses))
	allowed, on := l.allowed(r.Clients)
	if !on {
		c.Pass = true
		c.Detail = what + ", not checked (-max-conn-failures " + l.String() + ")"
		return c
	}
	c.Enabled, c.Limit = true, float64(allowed)
	c.Pass = r.ConnFailures <= int64(allowed)
	if c.Pass {
		c.Detail = fmt.Sprintf("%s, at most %d allowed (-max-conn-failures %s)", what, allowed, l.String())
		return c
	}
	c.Detail = fmt.Sprintf("%s, more than the %d allowed (-max-conn-failures %s)", what, allowed, l.String())
	if r.ConnOK == 0 {
		c.Detail += "; no connection opened at all"
	}
	if r.FirstConnError != "" {
		c.Detail += "; first error: " + r.FirstConnError
	}
	return c
}

// deliveryCheck compares the delivery ratio with -min-delivery.
func deliveryCheck(r *Report, minRatio float64) Check {
	c := Check{Name: "delivery_ratio", Value: r.DeliveryRatio, Limit: minRatio}
	what := fmt.Sprintf("delivery ratio %.4f (%d of %d)", r.DeliveryRatio, r.Received, r.Expected)
	switch {
	case minRatio <= 0:
		c.Pass = true
		c.Detail = what + ", not checked (-min-delivery 0)"
	case r.DeliveryRatio >= minRatio:
		c.Enabled, c.Pass = true, true
		c.Detail = fmt.Sprintf("%s, at least -min-delivery %g", what, minRatio)
	default:
		c.Enabled = true
		c.Detail = fmt.Sprintf("%s, below -min-delivery %g", what, minRatio)
	}
	return c
}

// p99Check compares the p99 latency with -max-p99. A run that measured no
// latency at all fails an enabled check: nothing arrived to be fast.
func p99Check(r *Report, maxP99 time.Duration) Check {
	limitMs := float64(maxP99) / float64(time.Millisecond)
	c := Check{Name: "p99_ms", Value: r.Latency.P99, Limit: limitMs}
	what := fmt.Sprintf("p99 latency %.3f ms", r.Latency.P99)
	switch {
	case maxP99 <= 0:
		c.Pass = true
		c.Detail = what + ", not checked (-max-p99 0)"
	case r.Latency.Count == 0:
		c.Enabled = true
		c.Detail = "no latency measured (no message arrived), -max-p99 " + maxP99.String()
	case r.Latency.P99 <= limitMs:
		c.Enabled, c.Pass = true, true
		c.Detail = fmt.Sprintf("%s, at most -max-p99 %s", what, maxP99)
	default:
		c.Enabled = true
		c.Detail = fmt.Sprintf("%s, above -max-p99 %s", what, maxP99)
	}
	return c
}

// completeCheck fails a run that was interrupted: its numbers cover only
// part of the plan.
func completeCheck(r *Report) Check {
	c := Check{Name: "complete", Enabled: true, Limit: 1}
	if r.Interrupted {
		c.Detail = "interrupted before the run finished; the numbers cover part of it"
		return c
	}
	c.Value, c.Pass = 1, true
	c.Detail = "not interrupted"
	return c
}

// allPass reports whether every check passed.
func allPass(cs []Check) bool {
	for _, c := range cs {
		if !c.Pass {
			return false
		}
	}
	return true
}

// failedChecks is the error run returns when the run finished but did not
// pass; main turns it into exitFail.
type failedChecks []Check

// Error lists the failed checks.
func (f failedChecks) Error() string {
	var parts []string
	for _, c := range f {
		if !c.Pass {
			parts = append(parts, c.Detail)
		}
	}
	return "FAIL: " + strings.Join(parts, "; ")
}

// exitCode maps run's result to the tool's exit code. Help that was asked
// for is a success.
func exitCode(err error) int {
	var failed failedChecks
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitPass
	case errors.As(err, &failed):
		return exitFail
	}
	return exitUsage
}

// sumCounts adds up a count map.
func sumCounts(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
