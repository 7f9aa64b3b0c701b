package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// A configuration file (-config FILE or HUBBUB_CONFIG) is TOML with one
// top-level key per flag, named as the flag without its dash:
//
//	addr = ":9000"
//	pong-wait = "45s"
//	allowed-origins = ["https://app.example.com"]
//
// Each value goes through the flag's own parser, so a file accepts exactly
// what the command line does and fails with the same rules. A value is set
// from the file only when neither its flag nor its HUBBUB_ variable is.

// listSettings are the flags whose file value may be a TOML array of
// strings; the command line takes them comma-separated.
var listSettings = map[string]bool{"allowed-origins": true}

// secretSettings are never printed by hubbub config.
var secretSettings = map[string]bool{"jwt-secret": true, "api-key": true}

// fileKey is one top-level key of a configuration file and where it is.
type fileKey struct {
	name string
	line int
}

// applyConfigFile reads the TOML file path and sets, through fs, every key
// whose flag origin does not already name (a flag or variable given wins).
// It records each key it sets in origin as "file PATH:LINE". Every problem
// is reported, each naming the file, the line and the key.
func applyConfigFile(fs *flag.FlagSet, path string, origin map[string]string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var values map[string]any
	if err := toml.Unmarshal(data, &values); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			msg := strings.TrimPrefix(de.Error(), "toml: ")
			if k := de.Key(); len(k) > 0 {
				return fmt.Errorf("%s:%d:%d: %s: %s", path, line, col, strings.Join(k, "."), msg)
			}
			return fmt.Errorf("%s:%d:%d: %s (the file must be TOML)", path, line, col, msg)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	keys, tables := fileKeys(data)
	var errs []error
	for _, t := range tables {
		errs = append(errs, fmt.Errorf("%s:%d: [%s]: tables are not used: write every setting at the top of the file, "+
			"named as its flag (addr = \":8080\")", path, t.line, t.name))
	}
	for _, k := range keys {
		at := fmt.Sprintf("%s:%d", path, k.line)
		v, ok := values[k.name]
		if !ok { // a dotted key: the parser made a table of it
			errs = append(errs, fmt.Errorf("%s: unknown key %q%s", at, k.name, suggestKey(fs, k.name)))
			continue
		}
		if err := applyFileValue(fs, k.name, v, at, origin); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// applyFileValue sets flag name to the file's value v found at at ("PATH:LINE").
func applyFileValue(fs *flag.FlagSet, name string, v any, at string, origin map[string]string) error {
	if advice, removed := removedSettings[name]; removed {
		return fmt.Errorf("%s: %s is no longer a setting: %s", at, name, advice)
	}
	if name == "config" {
		return fmt.Errorf("%s: config: a configuration file cannot name another; give -config or HUBBUB_CONFIG only", at)
	}
	f := fs.Lookup(name)
	if f == nil {
		return fmt.Errorf("%s: unknown key %q%s", at, name, suggestKey(fs, name))
	}
	s, err := fileValueString(name, v)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", at, name, err)
	}
	target := fs
	over, overridden := origin[name]
	if overridden {
		// A flag or variable wins, but a value the flag would refuse is
		// still an error in the file: parse it into a scratch Config.
		var scratch Config
		target = flag.NewFlagSet("file", flag.ContinueOnError)
		registerFlags(target, &scratch)
	}
	if err := target.Set(name, s); err != nil {
		shown := s
		if _, isString := v.(string); isString {
			shown = tomlQuote(s)
		}
		return fmt.Errorf("%s: %s = %s: %w; want %s", at, name, shown, err, valueHint(f))
	}
	if overridden {
		origin[name] = over + " (over file " + at + ")"
		return nil
	}
	origin[name] = "file " + at
	return nil
}

// fileValueString turns a TOML value into the text its flag parses.
func fileValueString(name string, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any:
		if !listSettings[name] {
			return "", errors.New("want one value, not a list")
		}
		parts := make([]string, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok || strings.Contains(s, ",") {
				return "", fmt.Errorf("element %d: want a string without commas", i+1)
			}
			parts[i] = s
		}
		return strings.Join(parts, ","), nil
	case map[string]any:
		return "", errors.New("want a value, not a table")
	default: // dates and times
		return "", fmt.Errorf("want a string or a number, not %T", v)
	}
}

// valueHint says what a flag's values look like, for an error message.
func valueHint(f *flag.Flag) string {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return "a value as the -" + f.Name + " flag takes"
	}
	switch g.Get().(type) {
	case time.Duration:
		return `a duration in quotes, such as "30s" or "1m30s"`
	case int:
		return "a whole number"
	case float64:
		return "a number"
	case bool:
		return "true or false"
	}
	return "a value as the -" + f.Name + " flag takes"
}

// suggestKey returns `; did you mean "x"?` when name is a flag's name
// written with underscores or capitals, else "".
func suggestKey(fs *flag.FlagSet, name string) string {
	norm := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	if f := fs.Lookup(norm); f != nil && norm != name {
		return fmt.Sprintf("; did you mean %q?", norm)
	}
	return " (keys are the flag names: hubbub -h lists them)"
}

// fileKeys returns the top-level keys of the TOML document data, dotted
// keys joined with ".", each with its line, and its table headers. data
// has already been parsed without error.
func fileKeys(data []byte) (keys, tables []fileKey) {
	var p unstable.Parser
	p.Reset(data)
	inTable := false
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.KeyValue:
			if inTable {
				continue // reported with its table
			}
			name, line := keyName(&p, e)
			keys = append(keys, fileKey{name, line})
		case unstable.Table, unstable.ArrayTable:
			inTable = true
			name, line := keyName(&p, e)
			tables = append(tables, fileKey{name, line})
		}
	}
	return keys, tables
}

// keyName returns the (possibly dotted) key of e and the line it starts on.
func keyName(p *unstable.Parser, e *unstable.Node) (string, int) {
	var parts []string
	line := 0
	it := e.Key()
	for it.Next() {
		n := it.Node()
		if line == 0 {
			line = p.Shape(n.Raw).Start.Line
		}
		parts = append(parts, string(n.Data))
	}
	return strings.Join(parts, "."), line
}

// tomlQuote returns s as a TOML basic string. JSON's string escapes are
// all valid TOML.
func tomlQuote(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	return strings.TrimSuffix(b.String(), "\n")
}

// printConfig is the config subcommand: it takes the server's flags,
// environment and -config file, and prints every setting's effective value
// (defaults filled in) with where it came from, as a TOML file that -config
// reads back. Secrets are left out, shown only as set or not, and a
// password in -nats-url is masked. Then it checks the settings as the
// server would, so it fails, after printing, where the server would refuse
// to start.
func printConfig(args []string, c cmdIO) error {
	cfg, origin, err := parseSettings(args, c.getenv, c.stderr)
	if err != nil {
		return err
	}
	eff := cfg.withDefaults()
	fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
	registerFlags(fs, &eff) // every flag's default is now its effective value
	type line struct{ setting, source string }
	var lines []line
	fs.VisitAll(func(f *flag.Flag) {
		src := origin[f.Name]
		if src == "" {
			src = "default"
		}
		val := f.DefValue
		switch {
		case f.Name == "config":
			if val == "" {
				src = "no configuration file"
			}
			lines = append(lines, line{"# config = " + tomlQuote(val), src})
			return
		case secretSettings[f.Name]:
			state := "not set"
			if val != "" {
				state = "set, not shown"
			}
			lines = append(lines, line{"# " + f.Name + " = (" + state + ")", src})
			return
		case f.Name == "allowed-origins":
			quoted := make([]string, len(eff.AllowedOrigins))
			for i, o := range eff.AllowedOrigins {
				quoted[i] = tomlQuote(o)
			}
			val = "[" + strings.Join(quoted, ", ") + "]"
		case f.Name == "nats-url" && redactURL(val) != val:
			lines = append(lines, line{"# " + f.Name + " = " + tomlQuote(redactURL(val)), src + "; password not shown"})
			return
		default:
			if _, isNum := numericFlag(f); !isNum {
				val = tomlQuote(val)
			}
		}
		lines = append(lines, line{f.Name + " = " + val, src})
	})
	width := 0
	for _, l := range lines {
		width = max(width, len(l.setting))
	}
	fmt.Fprintln(c.stdout, "# hubbub's effective configuration: every setting, its value, and where it came from")
	fmt.Fprintln(c.stdout, "# (flag > environment > file > default). Read back with -config; secrets are not shown.")
	for _, l := range lines {
		if _, err := fmt.Fprintf(c.stdout, "%-*s  # %s\n", width, l.setting, l.source); err != nil {
			return err
		}
	}
	return settingsFrom(eff.validate(), origin)
}

// numericFlag reports whether f holds a number, which TOML writes bare.
func numericFlag(f *flag.Flag) (any, bool) {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return nil, false
	}
	switch v := g.Get().(type) {
	case int, int64, uint, uint64, float64:
		return v, true
	}
	return nil, false
}

// redactURL masks the password of a URL list such as -nats-url's
// ("nats://u:p@h:4222,nats://h2:4222"); text that does not parse is
// returned as it is.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if u, err := url.Parse(strings.TrimSpace(p)); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				parts[i] = u.Redacted()
			}
		}
	}
	return strings.Join(parts, ",")
}

// settingsFrom adds to err, a validation error, where the settings it
// names came from when that was a file, so a person knows which line to
// change: "(history: file hubbub.toml:4)".
func settingsFrom(err error, origin map[string]string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var from []string
	for name, src := range origin {
		if !strings.HasPrefix(src, "file ") {
			continue
		}
		// Validation names a setting as "-name", "name " or, for a few,
		// in words with spaces ("log format").
		for _, form := range []string{"-" + name, name + " ", strings.ReplaceAll(name, "-", " ") + " "} {
			if strings.Contains(msg, form) {
				from = append(from, name+": "+src)
				break
			}
		}
	}
	if len(from) == 0 {
		return err
	}
	slices.Sort(from)
	return fmt.Errorf("%w\n(%s)", err, strings.Join(from, "; "))
}
