package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// cmdIO is what a subcommand reads and writes: the process's environment
// and standard streams in main, a test's in tests.
type cmdIO struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// hidden reads a password from the terminal without echo; nil when
	// stdin is not a terminal.
	hidden func() ([]byte, error)
	now    func() time.Time
}

// processIO is the cmdIO of the running process, with stderr as given.
func processIO(getenv func(string) string, stderr io.Writer) cmdIO {
	return cmdIO{
		getenv: getenv,
		stdin:  os.Stdin,
		stdout: os.Stdout,
		stderr: stderr,
		hidden: hiddenStdin(),
		now:    time.Now,
	}
}

// subcommand is one "hubbub NAME" command. run gets the arguments after
// NAME and returns flag.ErrHelp after printing its usage for -h.
type subcommand struct {
	name    string
	summary string // one line for hubbub -h
	run     func(ctx context.Context, args []string, io cmdIO) error
}

// subcommands lists every command besides serving, in the order hubbub -h
// shows them. The usage text is made from this list, so a command cannot
// be missing from it. (A function, not a variable, because help refers
// back to the list.)
func subcommands() []subcommand {
	return []subcommand{
		{"config", "print the effective configuration and where each value came from (takes the server's flags)",
			func(_ context.Context, args []string, c cmdIO) error { return printConfig(args, c) }},
		{"gencert", "write a self-signed TLS certificate and key for development",
			func(_ context.Context, args []string, c cmdIO) error {
				return gencert(args, c.stdout, c.stderr, c.now())
			}},
		{"hash-password", "read a password from stdin and print its bcrypt hash, for a -users file",
			func(_ context.Context, args []string, c cmdIO) error {
				return hashPassword(args, c.stdin, c.stdout, c.stderr, c.hidden)
			}},
		{"healthcheck", "GET /healthz on the port the server's -addr names; exit 0 if healthy, 1 if not",
			func(_ context.Context, args []string, c cmdIO) error {
				if healthcheck(args, c.getenv, c.stderr) != 0 {
					return errReported
				}
				return nil
			}},
		{"help", "print this text, or with a command's name that command's flags",
			func(ctx context.Context, args []string, c cmdIO) error { return help(ctx, args, c) }},
		{"jwt", "print an HS256 token for -auth jwt, signed with the server's -jwt-secret",
			func(_ context.Context, args []string, c cmdIO) error { return mintJWT(args, c) }},
		{"version", "print the version stamped at build time",
			func(_ context.Context, args []string, c cmdIO) error { return printVersion(args, c) }},
	}
}

// errReported is returned by a subcommand that has already told the
// person what went wrong: main exits 1 without printing it again.
var errReported = errors.New("reported")

// findSubcommand returns the subcommand called name, if there is one.
func findSubcommand(name string) (subcommand, bool) {
	for _, sc := range subcommands() {
		if sc.name == name {
			return sc, true
		}
	}
	return subcommand{}, false
}

// printUsage writes hubbub's usage: how to serve, every subcommand, and
// the server's flags from fs.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprint(w, "usage: hubbub [flags]            serve chat\n"+
		"       hubbub COMMAND [flags]    run a command\n"+
		"       hubbub help [COMMAND]     print this text, or a command's flags\n\ncommands:\n")
	cmds := subcommands()
	width := 0
	for _, sc := range cmds {
		width = max(width, len(sc.name))
	}
	for _, sc := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, sc.name, sc.summary)
	}
	fmt.Fprint(w, "\nEvery flag can also be set as HUBBUB_<NAME> (e.g. HUBBUB_ADDR) or as NAME in the -config file;\n"+
		"a flag beats the environment, which beats the file.\n\nflags:\n")
	out := fs.Output()
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(out)
}

// help is the help subcommand: with no argument it prints the usage to
// stdout; with a command's name, that command's flags.
func help(ctx context.Context, args []string, c cmdIO) error {
	switch {
	case len(args) == 0, len(args) == 1 && isHelpFlag(args[0]):
		fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
		cfg := DefaultConfig()
		registerFlags(fs, &cfg)
		printUsage(c.stdout, fs)
		return nil
	case len(args) == 1:
		sc, ok := findSubcommand(args[0])
		if !ok || sc.name == "help" {
			return fmt.Errorf("help %s: no such command; hubbub help lists them", args[0])
		}
		c.stderr = c.stdout // the usage is what was asked for
		if err := sc.run(ctx, []string{"-h"}, c); !errors.Is(err, flag.ErrHelp) && err != nil {
			return err
		}
		return nil
	default:
		return fmt.Errorf("help takes one command name, not %q", strings.Join(args, " "))
	}
}

// isHelpFlag reports whether a is one of the flag package's ways of asking
// for the usage.
func isHelpFlag(a string) bool {
	switch strings.TrimLeft(a, "-") {
	case "h", "help":
		return strings.HasPrefix(a, "-")
	}
	return false
}

// printVersion is the version subcommand.
func printVersion(args []string, c cmdIO) error {
	fs := newSubFlagSet("version", c.stderr, "prints the version stamped at build time (-ldflags \"-X main.version=…\")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	_, err := fmt.Fprintln(c.stdout, version)
	return err
}
