package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. It is
// 100 on every Linux architecture Go supports; reading it needs sysconf (cgo).
const clockTicks = 100

// procSample is one reading of a process's memory and CPU time.
type procSample struct {
	At     time.Time
	RSSKB  int64 // VmRSS from /proc/PID/status
	CPUTck int64 // utime+stime from /proc/PID/stat, in clock ticks
}

// readProc samples pid ("self" works too) from /proc.
func readProc(pid string) (procSample, error) {
	s := procSample{At: time.Now()}
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return s, fmt.Errorf("read status of pid %s: %w", pid, err)
	}
	if s.RSSKB, err = parseVmRSS(status); err != nil {
		return s, fmt.Errorf("pid %s: %w", pid, err)
	}
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return s, fmt.Errorf("read stat of pid %s: %w", pid, err)
	}
	if s.CPUTck, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("pid %s: %w", pid, err)
	}
	return s, nil
}

// parseVmRSS finds "VmRSS:  1234 kB" in /proc/PID/status.
func parseVmRSS(status []byte) (int64, error) {
	for _, line := range bytes.Split(status, []byte("\n")) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			break
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, errors.New("no VmRSS in status")
}

// parseStatCPU returns utime+stime from /proc/PID/stat. The command name in
// field 2 is parenthesised and may contain spaces, so fields are counted
// from the last ')'.
func parseStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := bytes.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("short stat")
	}
	u, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	s, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad utime/stime in stat")
	}
	return u + s, nil
}

// cpuPercent is the CPU use between two samples, in percent of one core.
func cpuPercent(a, b procSample) float64 {
	wall := b.At.Sub(a.At).Seconds()
	if wall <= 0 {
		return 0
	}
	return float64(b.CPUTck-a.CPUTck) / clockTicks / wall * 100
}

// perConnBytes is the RSS growth per connection in bytes, 0 without
// connections.
func perConnBytes(startKB, endKB int64, conns int) float64 {
	if conns <= 0 {
		return 0
	}
	return float64(endKB-startKB) * 1024 / float64(conns)
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit and returns
// the limit now in force. Go already does this at startup on Linux, but the
// tool must know the number to explain a failure.
func raiseFileLimit() (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return lim.Cur, fmt.Errorf("setrlimit: %w", err)
		}
	}
	return lim.Cur, nil
}

// isFileLimit reports whether err says the process or system ran out of
// file descriptors; dialling more is pointless then.
func isFileLimit(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// ProcReading is one process in one sample of the report's timeline.
type ProcReading struct {
	// CPUPercent is CPU use since the previous sample, in percent of one
	// core.
	CPUPercent float64 `json:"cpu_percent"`
	RSSKB      int64   `json:"rss_kb"`
}

// ProcPoint is one sample of the server and the tool, for the report's
// CPU and RSS charts.
type ProcPoint struct {
	// T is seconds since the run started (not since the window opened:
	// the connect phase is where an idle run's memory grows).
	T float64 `json:"t"`
	// Server is nil without -server-pid, or when /proc could not be read.
	Server *ProcReading `json:"server,omitempty"`
	Tool   *ProcReading `json:"tool,omitempty"`
}

// procSeries turns successive /proc readings of one process into
// ProcReadings. A nil series reads nothing.
type procSeries struct {
	pid  string
	prev procSample
	have bool // prev holds a reading
}

// read samples the process and returns the reading, or nil when /proc
// failed or when this is the first reading, which has no CPU interval
// yet. Failures are not logged: the run's procProbe already says so once.
func (s *procSeries) read() *ProcReading {
	if s == nil {
		return nil
	}
	cur, err := readProc(s.pid)
	if err != nil {
		s.have = false
		return nil
	}
	prev, had := s.prev, s.have
	s.prev, s.have = cur, true
	if !had {
		return nil
	}
	return &ProcReading{CPUPercent: cpuPercent(prev, cur), RSSKB: cur.RSSKB}
}

// procTimeline samples the server (if any) and the tool for the report's
// charts. It is owned by the sampler goroutine until that stops, then by
// Bench.run.
type procTimeline struct {
	start        time.Time
	last         time.Time // of the latest sample
	server, tool *procSeries
	points       []ProcPoint
}

// newProcTimeline takes the first readings, from which the first sample's
// CPU use is measured.
func newProcTimeline(serverPID int, start time.Time) *procTimeline {
	p := &procTimeline{start: start, last: start, tool: &procSeries{pid: "self"}}
	if serverPID > 0 {
		p.server = &procSeries{pid: strconv.Itoa(serverPID)}
	}
	p.server.read()
	p.tool.read()
	return p
}

// tick adds a sample at now, unless the previous one is less than
// minPointSec ago: CPU use over a sliver of a second is mostly noise.
func (p *procTimeline) tick(now time.Time) {
	if now.Sub(p.last).Seconds() < minPointSec {
		return
	}
	p.last = now
	pt := ProcPoint{T: now.Sub(p.start).Seconds(), Server: p.server.read(), Tool: p.tool.read()}
	if pt.Server != nil || pt.Tool != nil {
		p.points = append(p.points, pt)
	}
}
