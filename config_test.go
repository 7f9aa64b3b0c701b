package main

import (
	"flag"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
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
