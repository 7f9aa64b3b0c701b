package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/gorilla/websocket"
)

// chromiumPath is where Debian's chromium package puts the browser.
const chromiumPath = "/usr/bin/chromium"

// screenshotDir receives the screenshots the browser tests take; it is
// gitignored. Look at them after changing the page.
const screenshotDir = "testout"

// browserWait bounds every single step a test asks of the browser, so a
// page that never reaches a state fails the test instead of hanging it.
const browserWait = 20 * time.Second

// startBrowser launches a headless Chromium with a fresh profile for the
// test and closes it when the test ends. Without Chromium the test is
// skipped, unless HUBBUB_REQUIRE_BROWSER=1 (set by CI), where it fails.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		msg := fmt.Sprintf("browser tests need Chromium at %s (apt-get install -y chromium): %v", chromiumPath, err)
		if os.Getenv("HUBBUB_REQUIRE_BROWSER") == "1" {
			t.Fatal(msg + "; HUBBUB_REQUIRE_BROWSER=1 makes this a failure")
		}
		t.Skip(msg + "; skipping")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	// chromedp reports protocol noise through these; route it to the test
	// log, and stop before the test ends so nothing logs after it.
	var logMu sync.Mutex
	logging := true
	logf := func(format string, args ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		if logging {
			t.Logf("chromedp: "+format, args...)
		}
	}
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx, chromedp.WithErrorf(logf))
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser process to exit
		logMu.Lock()
		logging = false
		logMu.Unlock()
	})
	if err := chromedp.Do(browserCtx); err != nil { // starts the browser, no timeout
		t.Fatalf("start chromium: %v", err)
	}
	return browserCtx
}

// tab is one page in its own browser context (separate storage and
// cookies), as if opened by a different person.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu         sync.Mutex
	exceptions []string // uncaught JavaScript errors
	dialogs    int      // alert/confirm/prompt dialogs the page opened
}

// newTab opens a tab; the test fails if its page throws or opens a dialog.
func newTab(t *testing.T, browser context.Context, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	tb := &tab{t: t, name: name, ctx: ctx}
	err := chromedp.Listen(ctx, func(ev any) {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			desc := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				desc = d.Exception.Description
			}
			tb.exceptions = append(tb.exceptions, fmt.Sprintf("%s (%s:%d:%d)", desc, d.URL, d.LineNumber+1, d.ColumnNumber+1))
		case *page.EventJavascriptDialogOpening:
			tb.dialogs++
		}
	})
	if err != nil {
		t.Fatalf("%s: open tab: %v", name, err)
	}
	t.Cleanup(func() {
		tb.mu.Lock()
		defer tb.mu.Unlock()
		for _, e := range tb.exceptions {
			t.Errorf("%s: uncaught JavaScript error: %s", name, e)
		}
		if tb.dialogs > 0 {
			t.Errorf("%s: page opened %d dialogs", name, tb.dialogs)
		}
	})
	return tb
}

// do runs steps in the tab, failing the test if they do not finish in time.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

// eval evaluates a JavaScript expression in the tab and decodes its value.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, expr, err)
	}
	return v
}

// waitJS waits until the JavaScript expression is truthy; what says what
// the test was waiting for, for the failure message.
func (tb *tab) waitJS(what, expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(25*time.Millisecond), chromedp.WithPollingTimeout(browserWait)))
	if err != nil {
		tb.t.Fatalf("%s: waiting for %s: %v", tb.name, what, err)
	}
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}

// join opens the page at base, enters nick and room on the join screen and
// waits until the page says it is online in that room.
func (tb *tab) join(base, nick, room string) {
	tb.t.Helper()
	tb.do(
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#nick")),
		chromedp.SetValue(chromedp.CSS("#nick"), nick),
		chromedp.SetValue(chromedp.CSS("#join-room"), room),
		chromedp.Click(chromedp.CSS("#join")),
	)
	tb.waitOnline(room)
}

// waitOnline waits for the status to say online with room on screen.
func (tb *tab) waitOnline(room string) {
	tb.t.Helper()
	tb.do(chromedp.WaitVisible(chromedp.CSS(`#status[data-state="online"]`)))
	tb.waitJS("room title #"+room, fmt.Sprintf(`document.querySelector("#room-title").textContent === %s`, jsString("#"+room)))
}

// typeAndEnter types text into the message box, then presses Enter.
func (tb *tab) typeAndEnter(text string) {
	tb.t.Helper()
	tb.do(chromedp.SendKeys(chromedp.CSS("#message"), text), chromedp.SendKeys(chromedp.CSS("#message"), kb.Enter))
}

// setMessage puts text in the message box at once (typing hundreds of keys
// is slow) and fires the input event the page listens to.
func (tb *tab) setMessage(text string) {
	tb.t.Helper()
	eval[chromedp.Void](tb, fmt.Sprintf(`(() => { const m = document.querySelector("#message");
		m.value = %s; m.dispatchEvent(new Event("input")); })()`, jsString(text)))
}

// waitMessage waits until a chat message with exactly this text is shown.
func (tb *tab) waitMessage(text string) {
	tb.t.Helper()
	tb.waitJS("message "+jsString(text), fmt.Sprintf(
		`[...document.querySelectorAll("#messages .msg .body")].some((e) => e.textContent === %s)`, jsString(text)))
}

// waitLine waits until a system line with exactly this text is shown.
func (tb *tab) waitLine(text string) {
	tb.t.Helper()
	tb.waitJS("line "+jsString(text), fmt.Sprintf(
		`[...document.querySelectorAll("#messages .sys")].some((e) => e.textContent === %s)`, jsString(text)))
}

// shownMessage is one chat message as the page shows it.
type shownMessage struct {
	From string `json:"from"`
	Text string `json:"text"`
	Mine bool   `json:"mine"`
}

// messages returns the chat messages on screen, in order.
func (tb *tab) messages() []shownMessage {
	tb.t.Helper()
	return eval[[]shownMessage](tb, `[...document.querySelectorAll("#messages .msg")].map((e) => ({
		from: e.dataset.from, text: e.querySelector(".body").textContent, mine: e.classList.contains("mine")}))`)
}

// screenshot saves the visible page as testout/name.png.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		tb.t.Fatalf("%s: screenshot %s: %v", tb.name, name, err)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	path := filepath.Join(screenshotDir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	tb.t.Logf("screenshot %s", path)
}

// emulate sets the viewport size and the preferred colour scheme.
func (tb *tab) emulate(width, height int64, mobile bool, scheme string) {
	tb.t.Helper()
	var vopts []chromedp.EmulateViewportOption
	if mobile {
		vopts = append(vopts, chromedp.EmulateMobile)
	}
	media := chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{
				{Name: "prefers-color-scheme", Value: scheme},
				{Name: "prefers-reduced-motion", Value: "reduce"}, // no drawer caught mid-slide
			},
		})
		return err
	})
	tb.do(chromedp.EmulateViewport(width, height, vopts...), media)
}

func TestBrowser(t *testing.T) {
	browser := startBrowser(t)

	t.Run("chat between tabs, rooms and a terminal", func(t *testing.T) {
		s := newTestServer(t, Config{})
		base := s.ts.URL
		alice := newTab(t, browser, "alice")
		bob := newTab(t, browser, "bob")
		carol := newTab(t, browser, "carol")
		alice.join(base, "alice", "lobby")
		bob.join(base, "bob", "lobby")
		carol.join(base, "carol", "other")
		alice.waitLine("bob joined")

		alice.typeAndEnter("hello from alice")
		bob.waitMessage("hello from alice")
		bob.typeAndEnter("hi alice")
		alice.waitMessage("hi alice")

		// A terminal joins the same room in text format.
		term := s.dial(t, "room", "lobby", "name", "term", "format", "text")
		term.lineWith("you are term in lobby")
		alice.waitLine("term joined")
		alice.typeAndEnter("to the terminal")
		if got := term.lineWith("to the terminal"); got != "[lobby] alice: to the terminal" {
			t.Errorf("terminal got %q; want %q", got, "[lobby] alice: to the terminal")
		}
		term.sendRaw("hello browser\n")
		alice.waitMessage("hello browser")
		bob.waitMessage("hello browser")

		want := []shownMessage{
			{"alice", "hello from alice", true},
			{"bob", "hi alice", false},
			{"alice", "to the terminal", true},
			{"term", "hello browser", false},
		}
		if got := alice.messages(); !equalMessages(got, want) {
			t.Errorf("alice sees %+v; want %+v", got, want)
		}
		for i := range want {
			want[i].Mine = want[i].From == "bob"
		}
		if got := bob.messages(); !equalMessages(got, want) {
			t.Errorf("bob sees %+v; want %+v", got, want)
		}
		members := eval[[]string](bob, `[...document.querySelectorAll("#members .member-name")].map((e) => e.textContent)`)
		if strings.Join(members, ",") != "alice,bob,term" {
			t.Errorf("bob's member list = %v; want alice, bob, term", members)
		}

		// Carol, in another room, saw none of it. Her own message is queued
		// behind anything the hub sent her before, so once it shows, nothing
		// from lobby can still be on its way.
		carol.typeAndEnter("anyone here?")
		carol.waitMessage("anyone here?")
		if got := carol.messages(); len(got) != 1 {
			t.Errorf("carol in another room sees %+v; want only her own message", got)
		}

		// Screenshots of a real conversation, while it is on screen.
		bob.do(chromedp.Evaluate[chromedp.Void](`document.querySelector("#message").blur()`))
		for _, shot := range []struct {
			name          string
			width, height int64
			mobile        bool
			scheme        string
		}{
			{"desktop-light", 1280, 800, false, "light"},
			{"desktop-dark", 1280, 800, false, "dark"},
			{"phone-light", 390, 844, true, "light"},
			{"phone-dark", 390, 844, true, "dark"},
		} {
			bob.emulate(shot.width, shot.height, shot.mobile, shot.scheme)
			bob.screenshot("chat-" + shot.name)
		}
		bob.do(chromedp.Click(chromedp.CSS("#menu")), chromedp.WaitVisible(chromedp.CSS("#backdrop")))
		bob.screenshot("chat-phone-dark-drawer")
		// The drawer covers the backdrop's centre, so tap its visible edge.
		bob.do(chromedp.MouseClickXY(380, 400), chromedp.WaitNotVisible(chromedp.CSS("#backdrop")))

		// Switching rooms clears the view, shows the new room's history
		// (carol's one message) and highlights the new room.
		alice.do(chromedp.SendKeys(chromedp.CSS("#room-input"), "other"+kb.Enter))
		alice.waitOnline("other")
		carol.waitLine("alice joined")
		alice.waitMessage("anyone here?")
		if got := alice.messages(); len(got) != 1 || got[0].From != "carol" {
			t.Errorf("after switching rooms alice sees %+v; want only carol's message from other's history", got)
		}
		alice.waitJS("rooms lobby and other, other current", `(() => {
			const rooms = [...document.querySelectorAll("#rooms .room")];
			const names = rooms.map((b) => b.dataset.room).join(",");
			const cur = rooms.filter((b) => b.getAttribute("aria-current") === "true").map((b) => b.dataset.room).join(",");
			return names === "lobby,other" && cur === "other";
		})()`)
		// and back, by clicking the room in the list.
		alice.do(chromedp.Click(chromedp.CSS(`#rooms .room[data-room="lobby"]`)))
		alice.waitOnline("lobby")
		bob.typeAndEnter("welcome back")
		alice.waitMessage("welcome back")

		// The join screen, for the record.
		fresh := newTab(t, browser, "fresh")
		fresh.do(chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.CSS("#nick")))
		fresh.emulate(1280, 800, false, "light")
		fresh.screenshot("join-desktop-light")
		fresh.emulate(390, 844, true, "dark")
		fresh.screenshot("join-phone-dark")
	})

	t.Run("markup in a message is shown as text", func(t *testing.T) {
		s := newTestServer(t, Config{})
		alice := newTab(t, browser, "alice")
		bob := newTab(t, browser, "bob")
		alice.join(s.ts.URL, "alice", "general")
		bob.join(s.ts.URL, "bob", "general")
		const evil = `<img src=x onerror=alert(1)>`
		alice.typeAndEnter(evil)
		bob.waitMessage(evil)
		alice.waitMessage(evil)
		for _, tb := range []*tab{alice, bob} {
			if n := eval[int](tb, `document.querySelectorAll("#messages img").length`); n != 0 {
				t.Errorf("%s: %d img elements in the message list; want 0", tb.name, n)
			}
		}
		// The page's own defences: the CSP header is checked by
		// TestHomeAndStatic; the cleanup of newTab fails on any dialog.
	})

	t.Run("byte counter counts the UTF-8 bytes of the whole frame", func(t *testing.T) {
		s := newTestServer(t, Config{})
		alice := newTab(t, browser, "alice")
		alice.join(s.ts.URL, "alice", "general")
		overhead := frameSize(t, "")
		// A message of é (2 bytes each) that fills the frame exactly, with
		// one ASCII byte to fix the parity.
		n := (maxFrame - overhead) / 2
		exact := strings.Repeat("é", n) + strings.Repeat("x", (maxFrame-overhead)%2)
		tests := []struct {
			text string
			ok   bool
		}{
			{"hi", true},
			{`say "quoted" and \back\`, true},
			{"naïve café 😀 — ünïcödé", true},
			{"tab\there", true},
			{exact, true},
			{exact + "x", false},
			{strings.Repeat("x", maxMessageRunes), true},
			{strings.Repeat("x", maxMessageRunes+1), false}, // fits 512 bytes, but the server would cut it
			{"   ", false},
		}
		for _, tt := range tests {
			alice.setMessage(tt.text)
			want := frameSize(t, strings.TrimSpace(tt.text))
			got := eval[string](alice, `document.querySelector("#counter").textContent`)
			if got != fmt.Sprintf("%d/%d", want, maxFrame) {
				t.Errorf("counter for %.30q… = %q; want %d/%d", tt.text, got, want, maxFrame)
			}
			disabled := eval[bool](alice, `document.querySelector("#send").disabled`)
			if disabled == tt.ok {
				t.Errorf("send button for %.30q… (%d bytes) disabled=%v; want %v", tt.text, want, disabled, !tt.ok)
			}
		}
	})

	t.Run("a too-long message is not sent and the connection stays", func(t *testing.T) {
		s := newTestServer(t, Config{})
		alice := newTab(t, browser, "alice")
		alice.join(s.ts.URL, "alice", "general")
		watch, _ := s.joined(t, "room", "general", "name", "watch")
		alice.waitLine("watch joined")

		alice.setMessage(strings.Repeat("é", 240)) // 240 characters, but 480+ bytes
		if !eval[bool](alice, `document.querySelector("#send").disabled`) {
			t.Fatal("send button enabled for a message over 512 bytes")
		}
		if !eval[bool](alice, `document.querySelector("#counter").classList.contains("over")`) {
			t.Error("counter not marked over the limit")
		}
		alice.do(chromedp.SendKeys(chromedp.CSS("#message"), kb.Enter))
		alice.setMessage("")
		alice.typeAndEnter("short one")
		alice.waitMessage("short one")
		// The watcher's next event is the short message: no 1009 close, so
		// no leave and rejoin, and the long one never left the browser.
		if p := watch.next().msg(t); p.From != "alice" || p.Message != "short one" {
			t.Errorf("watcher got %+v; want alice's short one", p)
		}
		if got := eval[string](alice, `document.querySelector("#status").dataset.state`); got != "online" {
			t.Errorf("status %q after the attempt; want online", got)
		}
	})

	t.Run("the page reconnects after a server restart", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		stop := serveOn(t, ln)
		alice := newTab(t, browser, "alice")
		alice.join("http://"+addr, "alice", "phoenix")
		alice.typeAndEnter("before the restart")
		alice.waitMessage("before the restart")

		stop()
		alice.do(chromedp.WaitVisible(chromedp.CSS(`#status:is([data-state="reconnecting"], [data-state="connecting"])`)))
		alice.waitLine("Connection lost (server shutting down). Reconnecting…")

		stop = serveOn(t, listenAgain(t, addr))
		defer stop()
		alice.waitOnline("phoenix")
		alice.waitLine("Reconnected.")

		conn, _, err := websocket.DefaultDialer.Dial("ws://"+addr+"/ws?room=phoenix&name=watch", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		watch := &peer{t: t, conn: conn}
		var rp roomPayload
		watch.skipUntil("room_changed").decode(t, &rp)
		if strings.Join(rp.Members, ",") != "alice,watch" {
			t.Errorf("members after reconnect = %v; want alice back in phoenix under her name", rp.Members)
		}
		alice.typeAndEnter("after the restart")
		if p := watch.skipUntil("new_message").msg(t); p.Message != "after the restart" || p.From != "alice" {
			t.Errorf("watcher got %+v; want alice's message after the restart", p)
		}
		alice.waitMessage("after the restart")
		if got := alice.messages(); len(got) != 2 {
			t.Errorf("alice sees %+v; want the message from before and the one from after the restart", got)
		}
	})

	t.Run("login mode: login form, a fresh ticket per connection", func(t *testing.T) {
		s := newTestServer(t, Config{})
		auth := newStubAuth(s.routes(), "alice", "secret")
		ts := httptest.NewServer(auth)
		t.Cleanup(ts.Close)
		alice := newTab(t, browser, "alice")
		alice.do(
			chromedp.Navigate(ts.URL+"/"),
			chromedp.WaitVisible(chromedp.CSS("#username")),
			chromedp.SendKeys(chromedp.CSS("#username"), "alice"),
			chromedp.SendKeys(chromedp.CSS("#password"), "wrong"+kb.Enter),
		)
		alice.waitJS("the wrong-password message", `document.querySelector("#login-error").textContent === "Wrong username or password."`)
		alice.do(
			chromedp.SetValue(chromedp.CSS("#login-room"), "staff"),
			chromedp.SetValue(chromedp.CSS("#password"), "secret"),
			chromedp.Click(chromedp.CSS("#login")),
		)
		alice.waitOnline("staff")
		if me := eval[string](alice, `document.querySelector("#me").textContent`); me != "alice" {
			t.Errorf("page says the user is %q; want alice", me)
		}
		if eval[bool](alice, `document.querySelector("#nick").checkVisibility()`) {
			t.Error("nickname form visible in login mode")
		}

		// A dropped connection comes back with a new ticket: tickets are
		// single use, so reusing the first one would be refused.
		eval[chromedp.Void](alice, `state.ws.close()`)
		alice.waitLine("Reconnected.")
		if n := auth.issued(); n != 2 {
			t.Errorf("%d tickets issued; want 2 (login, then reconnect)", n)
		}
		// When the password no longer works, the page asks again.
		auth.setPassword("changed")
		eval[chromedp.Void](alice, `state.ws.close()`)
		alice.do(chromedp.WaitVisible(chromedp.CSS("#password")))
		alice.waitJS("the log-in-again note", `document.querySelector("#login-error").textContent === "Please log in again."`)
	})

	t.Run("history is shown once and missed messages are counted", func(t *testing.T) {
		s := newTestServer(t, Config{})
		script := newScriptedWS(t, s.routes())
		alice := newTab(t, browser, "alice")
		alice.join(script.url, "alice", "hist")
		alice.waitMessage("three")
		// The script closed the first connection; the page comes back and
		// asks for what came after the newest message it saw.
		q := <-script.reconnects
		if q.Get("since") != "3" || q.Get("epoch") != "E1" || q.Get("room") != "hist" || q.Get("name") != "alice" {
			t.Errorf("reconnect query %v; want room=hist name=alice since=3 epoch=E1", q)
		}
		alice.waitMessage("ten")
		alice.waitLine("5 messages missed")
		var got []string
		for _, m := range alice.messages() {
			got = append(got, m.Text)
		}
		if want := "one,two,three,nine,ten"; strings.Join(got, ",") != want {
			t.Errorf("messages shown %v; want %s, each once and in order", got, want)
		}
	})
}

// stubAuth stands in for the auth endpoints (GET /auth, POST /login and
// ?ticket= on /ws) in front of a real server, so the page's login mode
// can be tested. Tickets are single use; /ws turns a ticket into ?name=.
type stubAuth struct {
	next http.Handler
	user string

	mu       sync.Mutex
	password string
	tickets  map[string]bool // unused tickets
	count    int             // tickets issued
}

func newStubAuth(next http.Handler, user, password string) *stubAuth {
	return &stubAuth{next: next, user: user, password: password, tickets: map[string]bool{}}
}

func (a *stubAuth) issued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count
}

func (a *stubAuth) setPassword(p string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.password = p
}

func (a *stubAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/auth":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"mode":"login"}`)
	case "/login":
		var creds struct{ Username, Password string }
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&creds) != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if creds.Username != a.user || creds.Password != a.password {
			http.Error(w, "wrong username or password", http.StatusUnauthorized)
			return
		}
		a.count++
		ticket := fmt.Sprintf("ticket-%d", a.count)
		a.tickets[ticket] = true
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ticket":%q,"expires_in":30}`, ticket)
	case "/ws":
		q := r.URL.Query()
		a.mu.Lock()
		ok := a.tickets[q.Get("ticket")]
		delete(a.tickets, q.Get("ticket"))
		a.mu.Unlock()
		if !ok {
			http.Error(w, "bad ticket", http.StatusUnauthorized)
			return
		}
		q.Del("ticket")
		q.Set("name", a.user)
		r.URL.RawQuery = q.Encode()
		a.next.ServeHTTP(w, r)
	default:
		a.next.ServeHTTP(w, r)
	}
}

// scriptedWS serves the real page but answers /ws from a script that
// speaks the history and recovery events (seq, epoch, history, recovery),
// so the page's handling of them is tested whatever the hub sends today.
type scriptedWS struct {
	url        string
	reconnects chan url.Values // query of each connection after the first
}

func newScriptedWS(t *testing.T, page http.Handler) *scriptedWS {
	sw := &scriptedWS{reconnects: make(chan url.Values, 4)}
	var (
		mu    sync.Mutex
		conns []*websocket.Conn
		n     int
		wg    sync.WaitGroup
	)
	msg := func(seq int, text string) string {
		return fmt.Sprintf(`{"id":%d,"seq":%d,"epoch":"E1","room":"hist","from":"bob","message":%q,"time":"2026-11-22T10:00:%02d.000Z"}`,
			seq, seq, text, seq)
	}
	scripts := [][]string{
		{ // first connection: history, a duplicate, a live message, an unknown event; then a drop
			`{"type":"room_changed","payload":{"room":"hist","name":"alice","members":["alice","bob"],"count":2}}` + "\n" +
				`{"type":"history","payload":{"room":"hist","epoch":"E1","messages":[` + msg(1, "one") + "," + msg(2, "two") + `]}}` + "\n" +
				`{"type":"new_message","payload":` + msg(2, "two") + `}` + "\n" +
				`{"type":"new_message","payload":` + msg(3, "three") + `}`,
			`{"type":"from_the_future","payload":{}}`,
		},
		{ // reconnect: some were lost, the rest comes as history and live
			`{"type":"room_changed","payload":{"room":"hist","name":"alice","members":["alice","bob"],"count":2}}`,
			`{"type":"recovery","payload":{"recovered":false,"missed_from":4,"missed_to":8}}` + "\n" +
				`{"type":"history","payload":{"room":"hist","epoch":"E1","messages":[` + msg(3, "three") + "," + msg(9, "nine") + `]}}`,
			`{"type":"new_message","payload":` + msg(10, "ten") + `}`,
		},
	}
	mux := http.NewServeMux()
	mux.Handle("/", page)
	mux.HandleFunc("GET /auth", http.NotFound)
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		mu.Lock()
		i := n
		n++
		conns = append(conns, conn)
		mu.Unlock()
		if i > 0 {
			sw.reconnects <- r.URL.Query()
		}
		if i >= len(scripts) {
			conn.Close()
			return
		}
		for _, frame := range scripts[i] {
			conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := conn.WriteMessage(websocket.TextMessage, []byte(frame)); err != nil {
				return
			}
		}
		if i == 0 {
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(closeGoingAway, "restarting"),
				time.Now().Add(time.Second))
			conn.Close()
			return
		}
		for { // hold the connection until the test ends
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	})
	ts := httptest.NewServer(mux)
	t.Cleanup(func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
		ts.Close()
	})
	sw.url = ts.URL
	return sw
}

// maxFrame is the server's default frame limit, which the page assumes.
const maxFrame = 512

// frameSize is the length of the send_message frame the page builds for
// msg: JSON.stringify does not escape <, > and &, so neither do we.
func frameSize(t *testing.T, msg string) int {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"type": "send_message", "payload": map[string]string{"message": msg}}); err != nil {
		t.Fatal(err)
	}
	return b.Len() - 1 // Encode adds a newline
}

// equalMessages compares two lists of shown messages.
func equalMessages(a, b []shownMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// serveOn runs hubbub on ln the way main does and returns a func that
// shuts it down gracefully and waits for it. That func is also called
// when the test ends if it has not been called before.
func serveOn(t *testing.T, ln net.Listener) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, Config{ShutdownTimeout: 5 * time.Second}, testLogger(t), ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve on %s: %v", ln.Addr(), err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// listenAgain listens on addr again after a server on it stopped. The
// kernel may take a moment to release the port, so it retries briefly.
func listenAgain(t *testing.T, addr string) net.Listener {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln, err := net.Listen("tcp", addr)
		if err == nil {
			return ln
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("listen again on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
