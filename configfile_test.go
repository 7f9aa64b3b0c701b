package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeConfig writes text to a hubbub.toml in a fresh directory and
// returns its path.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hubbub.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigFile reads configuration files, good and bad, through the
// server's own parsing. Each bad one must be refused naming the file, the
// line and the key.
func TestConfigFile(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(Config, map[string]string) bool
		// wantErr lists what the error must say; "FILE" stands for the
		// file's path.
		wantErr []string
	}{
		{"every kind of value", `# a comment
addr = "127.0.0.1:9000"
send-queue = 64
msg-rate = 2.5
pong-wait = "45s"
allowed-origins = ["https://a.example", "b.example:8080"]
auth = "jwt"
jwt-secret = "0123456789abcdef0123456789abcdef"
`, func(c Config, o map[string]string) bool {
			return c.Addr == "127.0.0.1:9000" && c.SendQueue == 64 && c.MsgRate == 2.5 && c.PongWait == 45*time.Second &&
				strings.Join(c.AllowedOrigins, " ") == "https://a.example b.example:8080" && c.Auth == authJWT &&
				len(c.JWTSecret) == 32 && strings.HasSuffix(o["pong-wait"], "hubbub.toml:5") && o["history"] == ""
		}, nil},
		{"origins as one string, as on the command line", `allowed-origins = "a.example, b.example"`,
			func(c Config, _ map[string]string) bool { return len(c.AllowedOrigins) == 2 }, nil},
		{"numbers may be quoted, as in the environment", `send-queue = "8"`,
			func(c Config, _ map[string]string) bool { return c.SendQueue == 8 }, nil},
		{"zero is a setting", "history = 0\nmsg-rate = 0",
			func(c Config, _ map[string]string) bool {
				c = c.withDefaults()
				return c.History == 0 && c.MsgRate == 0
			}, nil},
		{"empty file", "", func(c Config, _ map[string]string) bool { return c.Addr == ":8080" }, nil},
		{"unknown key", "addr = \":1\"\nfrobnicate = 3\n", nil, []string{"FILE:2: unknown key \"frobnicate\""}},
		{"underscores", "send_queue = 8", nil, []string{`FILE:1: unknown key "send_queue"; did you mean "send-queue"?`}},
		{"capitals", "\n\nAddr = \":1\"", nil, []string{`FILE:3: unknown key "Addr"; did you mean "addr"?`}},
		{"dotted key", "log.level = \"debug\"", nil, []string{`FILE:1: unknown key "log.level"`}},
		{"table", "addr = \":1\"\n[tls]\ncert = \"c.pem\"\n", nil, []string{"FILE:2: [tls]: tables are not used"}},
		{"inline table", `tls-cert = {file = "c.pem"}`, nil, []string{"FILE:1: tls-cert: want a value, not a table"}},
		{"list for a single value", `addr = [":1", ":2"]`, nil, []string{"FILE:1: addr: want one value, not a list"}},
		{"duration without unit", "\npong-wait = 60", nil, []string{`FILE:2: pong-wait = 60: `, `want a duration in quotes, such as "30s"`}},
		{"word for a number", `send-queue = "lots"`, nil, []string{`FILE:1: send-queue = "lots": `, "want a whole number"}},
		{"date", `ticket-ttl = 2026-01-01`, nil, []string{"FILE:1: ticket-ttl: want a string or a number"}},
		{"removed setting", `batch-window = "30ms"`, nil, []string{"FILE:1: batch-window is no longer a setting: writes now fill up"}},
		{"a file naming another", `config = "other.toml"`, nil, []string{"FILE:1: config: a configuration file cannot name another"}},
		{"not TOML", "addr: :8080\n", nil, []string{"FILE:1:", "the file must be TOML"}},
		{"key twice", "addr = \":1\"\naddr = \":2\"\n", nil, []string{"FILE:2:", "addr", "already defined"}},
		{"every problem at once", "a = 1\nb = 2\n", nil, []string{`FILE:1: unknown key "a"`, `FILE:2: unknown key "b"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, tt.file)
			c, origin, err := parseSettings([]string{"-config", path}, func(string) string { return "" }, io.Discard)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; want one saying %q", tt.wantErr)
				}
				for _, w := range tt.wantErr {
					if w = strings.ReplaceAll(w, "FILE", path); !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c, origin) {
				t.Errorf("config %+v, origins %v failed the check", c, origin)
			}
		})
	}
	if _, _, err := parseSettings([]string{"-config", "/nonexistent/hubbub.toml"}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "config file: open /nonexistent/hubbub.toml") {
		t.Errorf("missing file: err = %v; want it to name the file", err)
	}
}

// TestConfigPrecedence sets one key in every place it can be set and
// checks which wins: flag > environment > file > default.
func TestConfigPrecedence(t *testing.T) {
	path := writeConfig(t, "addr = \":3\"\nsend-queue = 3\nnode = \"from-file\"\n")
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantAddr   string
		wantOrigin string
	}{
		{"file over default", []string{"-config", path}, nil, ":3", "file " + path + ":1"},
		{"env over file", []string{"-config", path}, map[string]string{"HUBBUB_ADDR": ":2"}, ":2", "env HUBBUB_ADDR (over file " + path + ":1)"},
		{"flag over env and file", []string{"-config", path, "-addr", ":1"}, map[string]string{"HUBBUB_ADDR": ":2"}, ":1", "flag -addr (over file " + path + ":1)"},
		{"file from HUBBUB_CONFIG", nil, map[string]string{"HUBBUB_CONFIG": path}, ":3", "file " + path + ":1"},
		{"-config over HUBBUB_CONFIG", []string{"-config", path}, map[string]string{"HUBBUB_CONFIG": "/nonexistent"}, ":3", "file " + path + ":1"},
		{"no file: default", nil, nil, ":8080", ""},
	}
	bad := writeConfig(t, "send-queue = \"lots\"\n")
	if _, _, err := parseSettings([]string{"-config", bad, "-send-queue", "5"}, func(string) string { return "" }, io.Discard); err == nil ||
		!strings.Contains(err.Error(), bad+":1: send-queue") {
		t.Errorf("a bad file value under a flag: err = %v; want the file's line refused all the same", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, origin, err := parseSettings(tt.args, func(k string) string { return tt.env[k] }, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if c.Addr != tt.wantAddr || origin["addr"] != tt.wantOrigin {
				t.Errorf("addr = %q from %q; want %q from %q", c.Addr, origin["addr"], tt.wantAddr, tt.wantOrigin)
			}
		})
	}
}

// TestConfigCommand runs hubbub config with a setting from each place and
// checks the printout: each value with its source, secrets left out, and
// the output itself a configuration file that gives the same settings.
func TestConfigCommand(t *testing.T) {
	secret := "0123456789abcdef0123456789abcdef"
	path := writeConfig(t, "history = 7\nauth = \"jwt\"\njwt-secret = \""+secret+"\"\n"+
		"nats-url = \"nats://hub:hunter2@127.0.0.1:4222\"\nallowed-origins = [\"https://a.example\"]\n")
	env := map[string]string{"HUBBUB_SEND_QUEUE": "64", "HUBBUB_API_KEY": "api-secret-value"}
	stdout, stderr, code := runCmd(t, env, "config", "-config", path, "-addr", "127.0.0.1:9")
	// -data-dir is unset, so NATS and history on disk do not conflict;
	// validation passes and the command exits 0.
	if code != 0 {
		t.Fatalf("hubbub config exited %d: %s", code, stderr)
	}
	for _, want := range []string{
		`addr = "127.0.0.1:9"`, "# flag -addr",
		"send-queue = 64", "# env HUBBUB_SEND_QUEUE",
		"history = 7", "# file " + path + ":1",
		`pong-wait = "1m0s"`,
		`allowed-origins = ["https://a.example"]`,
		"# jwt-secret = (set, not shown)", "# api-key = (set, not shown)",
		`# nats-url = "nats://hub:xxxxx@127.0.0.1:4222"`,
		`# config = "` + path + `"`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("hubbub config output lacks %q:\n%s", want, stdout)
		}
	}
	for _, secret := range []string{secret, "api-secret-value", "hunter2"} {
		if strings.Contains(stdout, secret) {
			t.Errorf("hubbub config printed the secret %q", secret)
		}
	}
	if !strings.Contains(stdout, "write-wait = \"10s\"") || !strings.Contains(stdout, "# default") {
		t.Errorf("defaults are not shown as such:\n%s", stdout)
	}

	// Read the output back: every setting it shows comes out the same.
	back := writeConfig(t, stdout)
	c, _, err := parseSettings([]string{"-config", back}, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatalf("hubbub config's output does not read back: %v", err)
	}
	if c.Addr != "127.0.0.1:9" || c.SendQueue != 64 || c.History != 7 || c.Auth != authJWT || c.JWTSecret != "" ||
		len(c.AllowedOrigins) != 1 {
		t.Errorf("read back: %+v", c)
	}
}

// TestConfigCommandValidates checks that hubbub config fails where the
// server would refuse to start, after printing, naming the file's line.
func TestConfigCommandValidates(t *testing.T) {
	path := writeConfig(t, "addr = \":1\"\nhistory = -1\n")
	stdout, stderr, code := runCmd(t, nil, "config", "-config", path)
	if code != 1 || !strings.Contains(stderr, "history -1: want 0 or more") || !strings.Contains(stderr, "history: file "+path+":2") {
		t.Errorf("hubbub config with history -1 = exit %d, stderr %q; want 1, naming the setting and %s:2", code, stderr, path)
	}
	if !strings.Contains(stdout, "history = -1") {
		t.Errorf("hubbub config printed nothing before failing:\n%s", stdout)
	}
}

// TestServeRefusesBadFileValue runs the server's command line with a file
// whose setting validation refuses: the error names the file and line.
func TestServeRefusesBadFileValue(t *testing.T) {
	path := writeConfig(t, "addr = \"127.0.0.1:0\"\nlog-format = \"xml\"\n")
	_, stderr, code := runCmd(t, nil, "-config", path)
	if code != 1 || !strings.Contains(stderr, `log format "xml": want text or json`) || !strings.Contains(stderr, "log-format: file "+path+":2") {
		t.Errorf("hubbub -config (log-format xml) = exit %d, stderr %q; want 1 naming %s:2", code, stderr, path)
	}
}

func TestJWTCommandReadsConfigFile(t *testing.T) {
	secret := strings.Repeat("f", 32)
	path := writeConfig(t, "jwt-secret = \""+secret+"\"\n")
	s := newTestServer(t, Config{Auth: authJWT, JWTSecret: secret})
	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"-config", []string{"-config", path}, nil},
		{"HUBBUB_CONFIG", nil, map[string]string{"HUBBUB_CONFIG": path}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub := "u" + strings.TrimPrefix(tt.name, "-")[:3]
			stdout, stderr, code := runCmd(t, tt.env, append([]string{"jwt", "-sub", sub}, tt.args...)...)
			if code != 0 {
				t.Fatalf("hubbub jwt exited %d: %s", code, stderr)
			}
			if _, name := s.joinedAs(t, nil, "ticket", strings.TrimSpace(stdout)); name != sub {
				t.Errorf("connected as %q; want %s", name, sub)
			}
		})
	}
}
