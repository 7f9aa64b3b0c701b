package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestReadmeFlagTable checks the README's configuration table against the
// flags themselves: every flag has a row, every row names real flags, and
// each default the table states is the flag's default. A default written
// as prose ("none", "off", …) must belong to a flag whose default is
// empty or zero.
func TestReadmeFlagTable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	registerFlags(fs, &c)

	_, table, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	row := regexp.MustCompile("(?m)^\\| (`-[^|]+) \\| ([^|]+) \\|")
	flagName := regexp.MustCompile("`-([a-z-]+)`")
	seen := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(table, -1) {
		def := strings.TrimSpace(m[2])
		for _, fm := range flagName.FindAllStringSubmatch(m[1], -1) {
			name := fm[1]
			seen[name] = true
			f := fs.Lookup(name)
			if f == nil {
				t.Errorf("README lists -%s, which is not a flag", name)
				continue
			}
			if !strings.HasPrefix(def, "`") {
				if f.DefValue != "" && f.DefValue != "0" {
					t.Errorf("README gives -%s the default %q; the flag's is %q", name, def, f.DefValue)
				}
				continue
			}
			// Parse the README's value the way the flag would, so that
			// 60s and 1m0s compare equal.
			probe := flag.NewFlagSet("probe", flag.ContinueOnError)
			probe.SetOutput(io.Discard)
			var pc Config
			registerFlags(probe, &pc)
			if err := probe.Set(name, strings.Trim(def, "`")); err != nil {
				t.Errorf("README default %s for -%s does not parse: %v", def, name, err)
				continue
			}
			if got := probe.Lookup(name).Value.String(); got != f.DefValue {
				t.Errorf("README gives -%s the default %s (%s); the flag's is %q", name, def, got, f.DefValue)
			}
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if !seen[f.Name] {
			t.Errorf("flag -%s is missing from the README's table", f.Name)
		}
	})
}

// TestReadmeConfigFile holds the README's Configuration section to the
// file format as TestReadmeFlagTable holds it to the flags: every default
// the table states, written as a file key, reads back as the flag's
// default, and the section's TOML example loads as it stands.
func TestReadmeConfigFile(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Configuration\n")
	if !ok {
		t.Fatal("README has no Configuration section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	c := DefaultConfig()
	fs := flag.NewFlagSet("hubbub", flag.ContinueOnError)
	registerFlags(fs, &c)

	// Every stated default, as the file would say it.
	row := regexp.MustCompile("(?m)^\\| `-([a-z-]+)` \\| `([^`|]+)` \\|")
	var file strings.Builder
	var keys []string
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		f := fs.Lookup(m[1])
		if f == nil {
			continue // TestReadmeFlagTable reports it
		}
		v := m[2]
		if _, isNum := numericFlag(f); !isNum {
			v = tomlQuote(v)
		}
		fmt.Fprintf(&file, "%s = %s\n", m[1], v)
		keys = append(keys, m[1])
	}
	if len(keys) < 20 {
		t.Fatalf("found %d defaults in the README's table; the pattern no longer matches it", len(keys))
	}
	got, origin, err := parseSettings([]string{"-config", writeConfig(t, file.String())}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("the README's defaults, as a file, do not load: %v\n%s", err, file.String())
	}
	gs := flag.NewFlagSet("got", flag.ContinueOnError)
	registerFlags(gs, &got)
	for _, k := range keys {
		if !strings.HasPrefix(origin[k], "file ") {
			t.Errorf("key %s: set from %q; want the file", k, origin[k])
		}
		if g, d := gs.Lookup(k).DefValue, fs.Lookup(k).DefValue; g != d {
			t.Errorf("file key %s from the README's default reads as %q; the flag's default is %q", k, g, d)
		}
	}

	// The example file.
	_, example, ok := strings.Cut(section, "```toml\n")
	if !ok {
		t.Fatal("the Configuration section has no ```toml example")
	}
	example, _, _ = strings.Cut(example, "```")
	ex, origin, err := parseSettings([]string{"-config", writeConfig(t, example)}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("the README's example file does not load: %v", err)
	}
	if len(origin) < 5 || ex.PongWait != 45*time.Second {
		t.Errorf("the README's example set %d settings (pong-wait %v); want all of its keys, pong-wait 45s", len(origin), ex.PongWait)
	}
}
