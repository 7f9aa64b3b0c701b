package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

// runCmd runs args as the hubbub command line with env as the environment
// and returns stdout, stderr and the exit code main would give.
func runCmd(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := cmdIO{
		getenv: func(k string) string { return env[k] },
		stdin:  strings.NewReader(""),
		stdout: &out,
		stderr: &errOut,
		now:    time.Now,
	}
	err := runWith(context.Background(), args, c)
	code, msg := exitCode(err)
	if msg != "" {
		errOut.WriteString(msg + "\n")
	}
	return out.String(), errOut.String(), code
}

// TestUsageListsEveryCommand checks hubbub -h and hubbub help: both list
// every subcommand and exit 0.
func TestUsageListsEveryCommand(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"help", "-h"}} {
		stdout, stderr, code := runCmd(t, nil, args...)
		if code != 0 {
			t.Errorf("hubbub %s exited %d; want 0 (stderr %q)", strings.Join(args, " "), code, stderr)
		}
		usage := stdout + stderr
		for _, sc := range subcommands() {
			if !strings.Contains(usage, "\n  "+sc.name+" ") {
				t.Errorf("hubbub %s does not list the %s command:\n%s", strings.Join(args, " "), sc.name, usage)
			}
		}
		for _, want := range []string{"usage: hubbub [flags]", "-addr string", "HUBBUB_<NAME>"} {
			if !strings.Contains(usage, want) {
				t.Errorf("hubbub %s lacks %q", strings.Join(args, " "), want)
			}
		}
	}
	if stdout, _, _ := runCmd(t, nil, "help"); !strings.Contains(stdout, "commands:") {
		t.Error("hubbub help printed its usage elsewhere than stdout")
	}
}

// TestSubcommandHelp asks every subcommand for its usage, both ways: each
// must print it and exit 0.
func TestSubcommandHelp(t *testing.T) {
	for _, sc := range subcommands() {
		if sc.name == "help" {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			_, stderr, code := runCmd(t, nil, sc.name, "-h")
			if code != 0 || !strings.Contains(stderr, "usage: hubbub") {
				t.Errorf("hubbub %s -h = exit %d, stderr %q; want 0 and a usage", sc.name, code, stderr)
			}
			stdout, _, code := runCmd(t, nil, "help", sc.name)
			if code != 0 || !strings.Contains(stdout, "usage: hubbub") {
				t.Errorf("hubbub help %s = exit %d, stdout %q; want 0 and a usage", sc.name, code, stdout)
			}
		})
	}
}

func TestCommandLineErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"gencrt"}, `unknown command "gencrt": hubbub help lists the commands`},
		{[]string{"help", "nope"}, "help nope: no such command"},
		{[]string{"help", "jwt", "gencert"}, "help takes one command name"},
		{[]string{"version", "extra"}, `unexpected argument "extra"`},
		{[]string{"-addr", ":1", "serve"}, `unexpected argument "serve"`},
		{[]string{"-no-such-flag"}, "flag provided but not defined: -no-such-flag"},
	}
	for _, tt := range tests {
		_, stderr, code := runCmd(t, nil, tt.args...)
		if code != 1 || !strings.Contains(stderr, tt.want) {
			t.Errorf("hubbub %s = exit %d, stderr %q; want 1 and %q", strings.Join(tt.args, " "), code, stderr, tt.want)
		}
	}
}

func TestVersionCommand(t *testing.T) {
	old := version
	version = "v9.8.7"
	t.Cleanup(func() { version = old })
	if stdout, _, code := runCmd(t, nil, "version"); code != 0 || stdout != "v9.8.7\n" {
		t.Errorf("hubbub version = %q, exit %d; want %q, 0", stdout, code, "v9.8.7\n")
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err      error
		wantCode int
		wantMsg  string
	}{
		{nil, 0, ""},
		{flag.ErrHelp, 0, ""},
		{errReported, 1, ""},
		{errors.New("listen: address in use"), 1, "hubbub: listen: address in use"},
	}
	for _, tt := range tests {
		if code, msg := exitCode(tt.err); code != tt.wantCode || msg != tt.wantMsg {
			t.Errorf("exitCode(%v) = %d, %q; want %d, %q", tt.err, code, msg, tt.wantCode, tt.wantMsg)
		}
	}
}
