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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"golang.org/x/crypto/bcrypt"
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

// clientEval evaluates body in the tab with client bound to the page's
// client (static/hubbub.js's Client, exported by static/app.js) and
// decodes its value; a promise is awaited. Tests reach the page's state
// through it or through the DOM, never through page globals.
func clientEval[T any](tb *tab, body string) T {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, browserWait)
	defer cancel()
	expr := `import("/static/app.js").then(({client}) => (` + body + `))`
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.t.Fatalf("%s: evaluate %s: %v", tb.name, body, err)
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

// waitDelivery waits until the page shows text, one of its own messages,
// exactly once and as want says: "out" (still in the outbox) or "msg" (a
// message the server numbered), a colon, and its delivery label.
func (tb *tab) waitDelivery(text, want string) {
	tb.t.Helper()
	tb.waitJS(jsString(text)+" shown once as "+want, fmt.Sprintf(`(() => {
		const items = [...document.querySelectorAll("#messages > .msg, #messages > .out")]
			.filter((e) => e.querySelector(".body").textContent === %s);
		if (items.length !== 1) return false;
		const d = items[0].querySelector(".delivery");
		return (items[0].classList.contains("out") ? "out" : "msg") + ":" + (d ? d.textContent : "") === %s;
	})()`, jsString(text), jsString(want)))
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
		s := newTestServer(t, deployed(Config{}))
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
		// GET /auth says {"mode":"guest","login":false}: no login to offer.
		if eval[bool](fresh, `document.querySelector("#show-login").checkVisibility()`) {
			t.Error("login link shown by a server without accounts")
		}
		fresh.emulate(1280, 800, false, "light")
		fresh.screenshot("join-desktop-light")
		fresh.emulate(390, 844, true, "dark")
		fresh.screenshot("join-phone-dark")
	})

	t.Run("markup in a message is shown as text", func(t *testing.T) {
		s := newTestServer(t, deployed(Config{}))
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
		s := newTestServer(t, deployed(Config{}))
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
		s := newTestServer(t, deployed(Config{}))
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

	t.Run("login mode: a real login, a fresh ticket per connection", func(t *testing.T) {
		users := usersFile(t, "alice", "wonderland")
		var seen wsLog
		// A small message budget, so that the page can be made to flood
		// and be closed with 1008 by the real limiter.
		hub := openHub(t, deployed(Config{Auth: authLogin, UsersFile: users, MsgRate: 2, MsgBurst: 5}), seen.wrap)
		s := hub.serve(t, nil)
		alice := newTab(t, browser, "alice")
		alice.do(
			chromedp.Navigate(s.ts.URL+"/"),
			chromedp.WaitVisible(chromedp.CSS("#username")),
			chromedp.SendKeys(chromedp.CSS("#username"), "alice"),
			chromedp.SendKeys(chromedp.CSS("#password"), "wrong"+kb.Enter),
		)
		alice.waitJS("the wrong-password message", `document.querySelector("#login-error").textContent === "Wrong username or password."`)
		alice.do(
			chromedp.SetValue(chromedp.CSS("#login-room"), "staff"),
			chromedp.SetValue(chromedp.CSS("#password"), "wonderland"),
			chromedp.Click(chromedp.CSS("#login")),
		)
		alice.waitOnline("staff")
		if me := eval[string](alice, `document.querySelector("#me").textContent`); me != "alice" {
			t.Errorf("page says the user is %q; want alice", me)
		}
		for _, sel := range []string{"#nick", "#show-join", "#rename-panel"} {
			if eval[bool](alice, fmt.Sprintf(`document.querySelector(%q).checkVisibility()`, sel)) {
				t.Errorf("%s visible in login mode", sel)
			}
		}

		// The page floods (it is made to send 30 requests at once), gets
		// rate_limited errors and then close 1008 from the real limiter,
		// says why, and comes back on its own with a new ticket.
		alice.emulate(390, 844, true, "light")
		clientEval[chromedp.Void](alice, `(() => { for (let i = 0; i < 30; i++) client.request("list_rooms"); })()`)
		alice.waitJS("the status line to say why", `/^reconnecting in \ds · closed for flooding$/.test(document.querySelector("#status").textContent)`)
		alice.screenshot("flooded-phone-light") // taken while the page waits to reconnect, most times
		alice.waitLine("The server closed the connection: this page sent too many messages too fast (flooding). Reconnecting…")
		alice.waitOnline("staff")
		alice.waitLine("Reconnected.")
		errs := eval[[]string](alice, `[...document.querySelectorAll("#messages .sys.error")].map((e) => e.textContent)`)
		if len(errs) != 1 || !strings.HasPrefix(errs[0], "slow down: at most 2 messages per second") || !strings.HasSuffix(errs[0], ")") {
			t.Errorf("error lines %q; want one rate_limited line with a repeat count", errs)
		}

		// Every connection redeemed a ticket of its own: two connections,
		// two different tickets, none left in the store, and the first one
		// is spent.
		var tickets []string
		for _, q := range seen.queries() {
			tickets = append(tickets, q.Get("ticket"))
		}
		if len(tickets) != 2 || tickets[0] == "" || tickets[1] == "" || tickets[0] == tickets[1] {
			t.Fatalf("tickets on /ws %q; want two different ones", tickets)
		}
		if n := hub.srv.auth.tickets.len(); n != 0 {
			t.Errorf("%d tickets left unredeemed; want 0", n)
		}
		s.expectRefused(t, nil, http.StatusUnauthorized, "already used", "room", "staff", "ticket", tickets[0])
		watch, _ := s.joinedAs(t, bearer(s.login(t, "alice", "wonderland")), "room", "staff")
		alice.typeAndEnter("back after flooding")
		if p := watch.skipUntil("new_message").msg(t); p.From != "alice" || p.Message != "back after flooding" {
			t.Errorf("second alice connection got %+v; want the page's message", p)
		}

		// When the password no longer works, the next reconnect cannot
		// log in and the page asks again.
		if err := os.WriteFile(users, []byte("alice:"+bcryptHash(t, "changed")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := hub.srv.auth.reload(); err != nil { // what SIGHUP does
			t.Fatal(err)
		}
		clientEval[chromedp.Void](alice, `(() => { for (let i = 0; i < 30; i++) client.request("list_rooms"); })()`)
		alice.do(chromedp.WaitVisible(chromedp.CSS("#password")))
		alice.waitJS("the log-in-again note", `document.querySelector("#login-error").textContent === "Please log in again."`)
	})

	t.Run("guest mode with accounts: a registered name needs the login", func(t *testing.T) {
		s := newTestServer(t, deployed(Config{UsersFile: usersFile(t, "alice", "wonderland")}))
		tb := newTab(t, browser, "guest")
		tb.do(chromedp.Navigate(s.ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#show-login")))
		tb.do(
			chromedp.SetValue(chromedp.CSS("#nick"), "alice"),
			chromedp.Click(chromedp.CSS("#join")),
		)
		// The server refuses the handshake with 403; the browser does not
		// say why, so the page asks GET /auth, finds the server up, and
		// stops retrying.
		tb.waitJS("the refusal note", `document.querySelector("#join-error").textContent ===
			"The server refused to let alice in. That name may belong to a registered user: log in to use it, or pick another name."`)
		tb.screenshot("join-refused-desktop-light")
		tb.do(
			chromedp.Click(chromedp.CSS("#show-login")),
			chromedp.WaitVisible(chromedp.CSS("#username")),
			chromedp.SendKeys(chromedp.CSS("#username"), "alice"),
			chromedp.SendKeys(chromedp.CSS("#password"), "wonderland"+kb.Enter),
		)
		tb.waitOnline("general")
		if me := eval[string](tb, `document.querySelector("#me").textContent`); me != "alice" {
			t.Errorf("page says the user is %q; want alice", me)
		}
		if eval[bool](tb, `document.querySelector("#rename-panel").checkVisibility()`) {
			t.Error("rename panel visible to a logged-in user, whose name comes from the login")
		}
	})

	t.Run("jwt mode: the token from the address fragment", func(t *testing.T) {
		secret := []byte("0123456789abcdef0123456789abcdef")
		s := newTestServer(t, deployed(Config{Auth: authJWT, JWTSecret: string(secret)}))
		token := func(sub string, exp time.Duration) string {
			return signJWT(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": sub, "exp": time.Now().Add(exp).Unix()})
		}
		dave := newTab(t, browser, "dave")
		dave.do(chromedp.Navigate(s.ts.URL + "/?room=ops#token=" + token("dave", time.Hour)))
		dave.waitOnline("ops")
		if me := eval[string](dave, `document.querySelector("#me").textContent`); me != "dave" {
			t.Errorf("page says the user is %q; want dave", me)
		}
		if u := eval[string](dave, `location.href`); strings.Contains(u, "token") {
			t.Errorf("address %q still holds the token", u)
		}
		erin, _ := s.joinedAs(t, bearer(token("erin", time.Hour)), "room", "ops")
		dave.waitLine("erin joined")
		dave.typeAndEnter("hello erin")
		if p := erin.skipUntil("new_message").msg(t); p.From != "dave" || p.Message != "hello erin" {
			t.Errorf("erin got %+v; want dave's message", p)
		}

		// An expired token is refused (401); the page stops and says so.
		late := newTab(t, browser, "late")
		late.do(chromedp.Navigate(s.ts.URL + "/#token=" + token("late", -time.Hour)))
		late.waitJS("the expired-token note", `document.querySelector("#token-error").textContent ===
			"The server did not accept your sign-in token; it may have expired."`)
		late.screenshot("token-expired-desktop-light")
		// Without a token there is nothing to try.
		late.do(chromedp.Navigate(s.ts.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#token-note")))
		if got := eval[string](late, `document.querySelector("#token-error").textContent`); got != "" {
			t.Errorf("token note without a token says %q; want nothing", got)
		}
	})

	t.Run("history and recovery across a server restart", func(t *testing.T) {
		const (
			lost  = "Connection lost (server shutting down). Reconnecting…"
			back  = "Reconnected."
			reset = "The history of #hist was reset on the server; messages sent while you were away may be lost."
		)
		tests := []struct {
			name    string
			durable bool // -data-dir: history and epoch survive the restart
			history int
			away    int      // messages bob sends while the page cannot connect
			note    string   // what the page says about the gap, "" for nothing
			want    []string // messages on screen after the reconnect, in order
		}{
			{"every missed message is replayed once", true, 0, 3, "",
				[]string{"b0", "b1", "b2", "a0", "a1", "a2", "live"}},
			{"messages no longer kept are counted", true, 5, 10,
				"5 messages missed while you were away; the server no longer has them.",
				[]string{"b0", "b1", "b2", "a5", "a6", "a7", "a8", "a9", "live"}},
			{"a memory-only restart is a history reset", false, 0, 2, reset,
				[]string{"b0", "b1", "b2", "a0", "a1", "live"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel() // most of each case is the page's backoff
				// history 0: the default.
				cfg := deployed(Config{History: tt.history})
				if tt.durable {
					cfg.DataDir = t.TempDir()
				}
				var seen wsLog
				hub := openHub(t, cfg, seen.wrap)
				s := hub.serve(t, nil)
				addr := s.ts.Listener.Addr().String()
				alice := newTab(t, browser, "alice")
				alice.join(s.ts.URL, "alice", "hist")
				bob, _ := s.joined(t, "room", "hist", "name", "bob")
				last := bob.post("b", 3)
				alice.waitMessage("b2")

				// The server restarts. Bob is back first, through a side
				// door, and talks while the page's address is still closed;
				// only then does the page's address open again.
				hub.stop()
				alice.waitLine(lost)
				hub = openHub(t, cfg, seen.wrap)
				side := hub.serve(t, nil)
				bob, _ = side.joined(t, "room", "hist", "name", "bob")
				bob.post("a", tt.away)
				hub.serve(t, listenAgain(t, addr))
				alice.waitLine(back)
				if tt.note != "" {
					alice.waitLine(tt.note)
				}
				bob.say("live")
				live := bob.skipUntil("new_message").msg(t)
				alice.waitMessage("live")
				// The next reconnect would resume from the newest message,
				// in the room's current epoch (the new one after a reset).
				cur := clientEval[string](alice, `(({epoch, seq}) => seq + "@" + epoch)(client.cursor("hist"))`)
				if want := fmt.Sprint(live.Seq) + "@" + live.Epoch; cur != want {
					t.Errorf("page would resume from %s; want %s", cur, want)
				}

				var shown []string
				for _, m := range alice.messages() {
					shown = append(shown, m.Text)
				}
				if strings.Join(shown, ",") != strings.Join(tt.want, ",") {
					t.Errorf("messages shown %v; want %v, each once and in order", shown, tt.want)
				}
				// The note sits in the gap: after "Reconnected.", before the
				// first message that came after what was lost.
				lines := eval[[]string](alice, `[...document.querySelectorAll("#messages > li")].map((e) =>
					e.classList.contains("msg") ? e.querySelector(".body").textContent : "* " + e.textContent)`)
				wantLines := []string{"* You joined #hist as alice.", "* bob joined", "b0", "b1", "b2", "* " + lost, "* " + back}
				if tt.note != "" {
					wantLines = append(wantLines, "* "+tt.note)
				}
				wantLines = append(wantLines, tt.want[3:]...)
				if strings.Join(lines, "\n") != strings.Join(wantLines, "\n") {
					t.Errorf("message list:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantLines, "\n"))
				}
				// The page asked to resume after the newest message it had.
				var resumes []string
				for _, q := range seen.queries() {
					if q.Get("name") == "alice" {
						resumes = append(resumes, q.Get("since")+"@"+q.Get("epoch"))
					}
				}
				if want := "@," + fmt.Sprint(last.Seq) + "@" + last.Epoch; strings.Join(resumes, ",") != want {
					t.Errorf("page's /ws since@epoch %v; want %s (first connect, then the resume)", resumes, want)
				}
				if tt.name == "messages no longer kept are counted" {
					alice.screenshot("recovery-desktop-light")
					alice.emulate(390, 844, true, "dark")
					alice.screenshot("recovery-phone-dark")
				}
			})
		}
	})

	t.Run("a message whose ack was lost is resent with its id and delivered once", func(t *testing.T) {
		tests := []struct {
			name    string
			restart bool // the server restarts (with -data-dir, which keeps the ids it has seen); else the socket is cut
		}{
			{"the socket is cut", false},
			{"the server restarts on the same port", true},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel() // most of each case is the page's backoff
				cfg := deployed(Config{})
				if tt.restart {
					cfg.DataDir = t.TempDir()
				}
				hub := openHub(t, cfg, nil)
				s := hub.serve(t, nil)
				addr := s.ts.Listener.Addr().String()
				rl := newRelay(t, addr) // the page reaches the server only through it
				alice := newTab(t, browser, "alice")
				alice.join("http://"+rl.addr(), "alice", "once")
				watch, _ := s.joined(t, "room", "once", "name", "watch")
				alice.waitLine("watch joined")

				// Everything the server sends the page from now on is lost:
				// the message gets through, its echo and its ack do not.
				rl.stall()
				alice.typeAndEnter("only once")
				if p := watch.skipUntil("new_message").msg(t); p.From != "alice" || p.Message != "only once" {
					t.Fatalf("watcher got %+v; want alice's message", p)
				}
				alice.waitDelivery("only once", "out:sending…")

				if tt.restart {
					hub.stop()
					hub = openHub(t, cfg, nil)
					s = hub.serve(t, listenAgain(t, addr))
				} else {
					rl.cut()
				}
				alice.waitLine("Connection lost. Reconnecting…")
				alice.waitLine("Reconnected.")
				// The page resent it with its id; the server knew the id and
				// acked it as a duplicate; the replay brought the message.
				alice.waitDelivery("only once", "msg:✓ sent")

				if tt.restart {
					// The watcher's connection ended with the old server; a
					// new one reads the room's log from its history.
					watch = s.dial(t, "room", "once", "name", "watch2")
					watch.skipUntil("room_changed")
					var h struct {
						Messages []messagePayload `json:"messages"`
					}
					watch.expect("history").decode(t, &h)
					var texts []string
					for _, m := range h.Messages {
						texts = append(texts, m.Message)
					}
					if strings.Join(texts, ",") != "only once" {
						t.Errorf("the room's history after the restart is %q; want the message once", texts)
					}
				}
				// Anything the resend had delivered again would reach the
				// watcher before the page's next message.
				alice.typeAndEnter("and the next one")
				if p := watch.skipUntil("new_message").msg(t); p.Message != "and the next one" {
					t.Errorf("watcher got %q after the reconnect; want the page's next message, nothing again", p.Message)
				}
				alice.waitDelivery("and the next one", "msg:✓ sent")
				var shown []string
				for _, m := range alice.messages() {
					shown = append(shown, m.Text)
				}
				if strings.Join(shown, ",") != "only once,and the next one" {
					t.Errorf("page shows %q; want each message once", shown)
				}
				if n := eval[int](alice, `document.querySelectorAll("#messages .out").length`); n != 0 {
					t.Errorf("%d messages still in the outbox; want none", n)
				}
			})
		}
	})

	t.Run("a message typed while the server is down waits, then is sent once", func(t *testing.T) {
		cfg := deployed(Config{})
		hub := openHub(t, cfg, nil)
		s := hub.serve(t, nil)
		addr := s.ts.Listener.Addr().String()
		alice := newTab(t, browser, "alice")
		alice.join(s.ts.URL, "alice", "later")
		hub.stop()
		alice.waitLine("Connection lost (server shutting down). Reconnecting…")

		alice.typeAndEnter("typed while down")
		alice.waitDelivery("typed while down", "out:sending…")
		if got := eval[string](alice, `document.querySelector("#message").value`); got != "" {
			t.Errorf("message box holds %q after sending; want it empty", got)
		}
		alice.screenshot("outbox-sending-desktop-light")

		// The server is back; a watcher is in the room before the page's
		// address opens again, so it sees whatever the page sends.
		hub = openHub(t, cfg, nil)
		side := hub.serve(t, nil)
		watch, _ := side.joined(t, "room", "later", "name", "watch")
		hub.serve(t, listenAgain(t, addr))
		alice.waitLine("Reconnected.")
		if p := watch.skipUntil("new_message").msg(t); p.From != "alice" || p.Message != "typed while down" {
			t.Fatalf("watcher got %+v; want the message typed while the server was down", p)
		}
		alice.waitDelivery("typed while down", "msg:✓ sent")
		alice.typeAndEnter("after it")
		if p := watch.skipUntil("new_message").msg(t); p.Message != "after it" {
			t.Errorf("watcher got %q; want the next message, nothing twice", p.Message)
		}
		alice.waitDelivery("after it", "msg:✓ sent")
	})
}

// relay is a TCP relay between the page and a server, for tests that must
// lose what the server sends while the page's own bytes still get
// through. stall makes the connections open now drop everything the
// server sends them from then on; cut closes them. Connections made later
// are relayed whole; while the server is down, the page's connection is
// closed at once, as a refused one would be. It stops when the test ends.
type relay struct {
	t        *testing.T
	ln       net.Listener
	upstream string
	wg       sync.WaitGroup // the accept loop and two copiers per connection

	mu     sync.Mutex
	conns  map[*relayConn]struct{}
	closed bool
}

// relayConn is one relayed connection.
type relayConn struct {
	page, server net.Conn
	stalled      atomic.Bool // drop what the server sends
}

func (c *relayConn) close() {
	c.page.Close()
	c.server.Close()
}

// newRelay starts a relay to upstream on a loopback port of its own.
func newRelay(t *testing.T, upstream string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, upstream: upstream, conns: make(map[*relayConn]struct{})}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

// addr is where the page connects.
func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		page, err := r.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := net.Dial("tcp", r.upstream)
		if err != nil {
			page.Close()
			continue
		}
		c := &relayConn{page: page, server: server}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			c.close()
			return
		}
		r.conns[c] = struct{}{}
		r.wg.Add(2)
		r.mu.Unlock()
		go func() { // page to server, always
			defer r.wg.Done()
			io.Copy(server, page)
			r.drop(c)
		}()
		go func() { // server to page, unless stalled
			defer r.wg.Done()
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 && !c.stalled.Load() {
					if _, werr := page.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			r.drop(c)
		}()
	}
}

// drop closes c and forgets it.
func (r *relay) drop(c *relayConn) {
	c.close()
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// stall makes every open connection drop what the server sends.
func (r *relay) stall() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.stalled.Store(true)
	}
}

// cut closes every open connection, both ways.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.close()
	}
}

// close stops the relay and waits for its goroutines.
func (r *relay) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.ln.Close()
	r.cut()
	r.wg.Wait()
}

// wsLog records the query of every /ws request that reaches the server,
// so a test can see what the page asked for (tickets, since and epoch).
type wsLog struct {
	mu sync.Mutex
	qs []url.Values
}

// wrap returns h, recording /ws queries on the way in.
func (l *wsLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ws" {
			l.mu.Lock()
			l.qs = append(l.qs, r.URL.Query())
			l.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// queries returns the recorded queries in arrival order.
func (l *wsLog) queries() []url.Values {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.qs)
}

// hubServer is one hubbub Server that a test serves on listeners of its
// choosing: the page's address again after a restart, or a second address
// that only the test's own clients know.
type hubServer struct {
	t       *testing.T
	srv     *Server
	handler http.Handler
	served  []*httptest.Server
	once    sync.Once
}

// TestBrowserModeration drives moderation and direct messages through
// the page: what a moderator does with the buttons it is shown, and what
// the others see of it.
func TestBrowserModeration(t *testing.T) {
	browser := startBrowser(t)
	users := roleUsersFile(t, "mo:mopass:moderator", "alice:alicepass", "bob:bobpass", "carol:carolpass")

	t.Run("a moderator deletes a message: deleted for everyone, and in the replay", func(t *testing.T) {
		s := newTestServer(t, deployed(Config{Auth: authLogin, UsersFile: users}))
		mo := newTab(t, browser, "mo")
		alice := newTab(t, browser, "alice")
		mo.login(s.ts.URL, "mo", "mopass", "lobby")
		alice.login(s.ts.URL, "alice", "alicepass", "lobby")
		alice.typeAndEnter("delete me")
		alice.typeAndEnter("keep me")
		alice.waitMessage("keep me")
		mo.waitMessage("keep me")

		// Only the moderator is offered the delete and the member actions.
		if n := eval[int](alice, `[...document.querySelectorAll(".msg-delete, .mod-act")].filter((e) => e.checkVisibility()).length`); n != 0 {
			t.Errorf("alice (no role) sees %d moderation buttons; want 0", n)
		}
		if !eval[bool](mo, `[...document.querySelectorAll("#members li[data-name=alice] .mod-act")].every((e) => e.checkVisibility())`) {
			t.Error("mo does not see kick, mute and ban on alice")
		}
		mo.do(chromedp.Click(chromedp.JSPath(msgItemJS("delete me") + `.querySelector(".msg-delete")`)))
		for _, tb := range []*tab{alice, mo} {
			tb.waitJS("message deleted in place", `(() => {
				const items = [...document.querySelectorAll("#messages .msg")];
				return items.length === 2 && items[0].classList.contains("deleted") &&
					items[0].querySelector(".body").textContent === "message deleted" &&
					items[1].querySelector(".body").textContent === "keep me";
			})()`)
			tb.expectNoText("delete me")
		}
		mo.waitLine("You deleted message 1.")
		// An action reads as one.
		alice.typeAndEnter("/me waves")
		mo.waitMessage("* alice waves")
		alice.waitDelivery("* alice waves", "msg:✓ sent")
		mo.screenshot("moderation-deleted-desktop-light")

		// A reload replays the history: the tombstone, never the text.
		alice.login(s.ts.URL, "alice", "alicepass", "lobby")
		alice.waitMessage("keep me")
		alice.waitJS("the replayed tombstone", `[...document.querySelectorAll("#messages .msg.deleted .body")].some((e) => e.textContent === "message deleted")`)
		alice.expectNoText("delete me")
	})

	t.Run("a direct message between two logged-in users shows in both Direct sections", func(t *testing.T) {
		s := newTestServer(t, deployed(Config{Auth: authLogin, UsersFile: users}))
		alice := newTab(t, browser, "alice")
		alice2 := newTab(t, browser, "alice, second tab")
		bob := newTab(t, browser, "bob")
		carol := newTab(t, browser, "carol")
		alice.login(s.ts.URL, "alice", "alicepass", "lobby")
		alice2.login(s.ts.URL, "alice", "alicepass", "other")
		bob.login(s.ts.URL, "bob", "bobpass", "lobby")
		carol.login(s.ts.URL, "carol", "carolpass", "lobby")
		alice.waitJS("bob and carol in the member list", `document.querySelector("#members li[data-name=carol] .dm-open") && document.querySelector("#members li[data-name=bob] .dm-open")`)

		alice.do(chromedp.Click(chromedp.CSS(`#members li[data-name=bob] .dm-open`)))
		alice.do(chromedp.WaitVisible(chromedp.CSS("#dm-input")))
		alice.waitJS("the conversation title", `document.querySelector("#dm-title").textContent === "Direct · bob"`)
		alice.do(chromedp.SendKeys(chromedp.CSS("#dm-input"), "hi bob, <b>just us</b>"+kb.Enter))
		alice.waitDirect("hi bob, <b>just us</b>")
		// Bob's Direct section lists alice with the message and one unread.
		bob.waitJS("alice in bob's Direct section", `(() => {
			const b = document.querySelector("#conversations button[data-peer=alice]");
			return b && b.querySelector(".conv-last").textContent === "hi bob, <b>just us</b>" && b.querySelector(".count")?.textContent === "1";
		})()`)
		// So does alice's other tab: the sender's copy goes to each of its connections.
		alice2.waitJS("bob in alice's other tab", `document.querySelector("#conversations button[data-peer=bob] .conv-last")?.textContent === "you: hi bob, <b>just us</b>"`)
		bob.do(chromedp.Click(chromedp.CSS(`#conversations button[data-peer=alice]`)))
		bob.waitDirect("hi bob, <b>just us</b>")
		if n := eval[int](bob, `document.querySelectorAll("#dm-messages b").length`); n != 0 {
			t.Errorf("bob's page made %d <b> elements of the text; want 0", n)
		}
		bob.do(chromedp.SendKeys(chromedp.CSS("#dm-input"), "hi alice"+kb.Enter))
		alice.waitDirect("hi alice")
		alice2.do(chromedp.Click(chromedp.CSS(`#conversations button[data-peer=bob]`)))
		alice2.waitDirect("hi bob, <b>just us</b>")
		alice2.waitDirect("hi alice")
		for _, tb := range []*tab{alice, alice2, bob} {
			got := eval[[]string](tb, `[...document.querySelectorAll("#dm-messages .dm-msg .body")].map((e) => e.textContent)`)
			if want := []string{"hi bob, <b>just us</b>", "hi alice"}; !slices.Equal(got, want) {
				t.Errorf("%s: conversation %q; want %q, each once", tb.name, got, want)
			}
		}
		if eval[bool](bob, `document.querySelector("#messages").checkVisibility()`) {
			t.Error("the room's messages show behind the open conversation")
		}
		bob.screenshot("direct-desktop-light")

		// A user who has gone gets nothing, and the sender is told.
		alice.do(chromedp.Click(chromedp.CSS(`#dm-close`)))
		alice.do(chromedp.Click(chromedp.CSS(`#members li[data-name=carol] .dm-open`)))
		clientEval[chromedp.Void](carol, `client.stop()`)
		alice.waitLine("carol left")
		alice.do(chromedp.SendKeys(chromedp.CSS("#dm-input"), "still there?"+kb.Enter))
		alice.waitJS("the no_such_user notice", `[...document.querySelectorAll("#dm-messages .sys.error")].some((e) =>
			e.textContent.startsWith("Not delivered to carol: carol is not online"))`)
	})

	t.Run("a kicked tab says why and does not reconnect; a banned one neither, even after a reload", func(t *testing.T) {
		var seen wsLog
		hub := openHub(t, deployed(Config{Auth: authLogin, UsersFile: users}), seen.wrap)
		s := hub.serve(t, nil)
		mo := newTab(t, browser, "mo")
		alice := newTab(t, browser, "alice")
		mo.login(s.ts.URL, "mo", "mopass", "lobby")
		alice.login(s.ts.URL, "alice", "alicepass", "lobby")
		mo.waitJS("alice in the member list", `document.querySelector("#members li[data-name=alice] .mod-act[data-act=kick]")`)
		aliceConnects := func() int {
			n := 0
			for _, q := range seen.queries() {
				if q.Get("ticket") != "" && q.Get("room") == "lobby" {
					n++
				}
			}
			return n
		}

		mo.do(chromedp.Click(chromedp.CSS(`#members li[data-name=alice] .mod-act[data-act=kick]`)))
		mo.do(chromedp.WaitVisible(chromedp.CSS("#mod-reason")))
		mo.do(chromedp.SendKeys(chromedp.CSS("#mod-reason"), "spam"), chromedp.Click(chromedp.CSS("#mod-confirm")))
		alice.waitJS("the kick notice", `document.querySelector("#messages .sys.ended .ended-text")?.textContent === "You were kicked from lobby by mo: spam."`)
		alice.waitJS("the status", `document.querySelector("#status").textContent === "kicked"`)
		mo.waitLine("mo kicked alice from #lobby: spam")
		mo.waitLine("alice was kicked by mo: spam")
		before := len(seen.queries())
		time.Sleep(2 * time.Second) // longer than the first few backoff waits
		if n := len(seen.queries()); n != before {
			t.Fatalf("the kicked page connected %d more times; want none", n-before)
		}
		alice.screenshot("moderation-kicked-desktop-light")

		// Rejoin is the user's choice after a kick.
		alice.do(chromedp.Click(chromedp.CSS("#messages .sys.ended .rejoin")))
		alice.waitOnline("lobby")
		alice.waitLine("Reconnected.")
		mo.waitLine("alice joined")

		// A ban closes with 4003; the page stops, offers no rejoin.
		mo.do(chromedp.Click(chromedp.CSS(`#members li[data-name=alice] .mod-act[data-act=ban]`)))
		mo.do(chromedp.WaitVisible(chromedp.CSS("#mod-duration")), chromedp.SetValue(chromedp.CSS("#mod-duration"), "1h"),
			chromedp.Click(chromedp.CSS("#mod-confirm")))
		alice.waitJS("the ban notice", `/^You were banned from lobby by mo until \d{4}-\d\d-\d\d \d\d:\d\dZ\.$/.test(document.querySelector("#messages .sys.ended[data-ended=banned] .ended-text")?.textContent)`)
		if eval[bool](alice, `!!document.querySelector("#messages .sys.ended[data-ended=banned] .rejoin")`) {
			t.Error("a banned page offers to rejoin")
		}

		// A reload logs in again; the server refuses the handshake with
		// 403, and the page says why instead of retrying.
		before = aliceConnects()
		alice.login(s.ts.URL, "alice", "alicepass", "lobby", false)
		alice.waitJS("the 403's reason", `/^You are banned from lobby until .* \(by mo\)\.$/.test(document.querySelector("#messages .sys.ended[data-ended=banned] .ended-text")?.textContent)`)
		alice.waitJS("the status", `document.querySelector("#status").textContent === "banned"`)
		time.Sleep(2 * time.Second)
		if n := aliceConnects() - before; n != 2 { // the refused handshake and the GET that read why
			t.Errorf("after the reload alice's page asked /ws %d times; want 2", n)
		}
	})
}

// roleUsersFile writes a users file from "name:password[:role]" entries,
// each password hashed as usersFile does, and returns its path.
func roleUsersFile(t *testing.T, entries ...string) string {
	t.Helper()
	var b strings.Builder
	for _, e := range entries {
		name, rest, _ := strings.Cut(e, ":")
		password, role, hasRole := strings.Cut(rest, ":")
		b.WriteString(name + ":" + bcryptHash(t, password))
		if hasRole {
			b.WriteString(":" + role)
		}
		b.WriteString("\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// login opens the page at base and logs in as user to room. Unless
// online is false, it waits until the page is online there.
func (tb *tab) login(base, user, password, room string, online ...bool) {
	tb.t.Helper()
	tb.do(
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#username")),
		chromedp.SetValue(chromedp.CSS("#username"), user),
		chromedp.SetValue(chromedp.CSS("#password"), password),
		chromedp.SetValue(chromedp.CSS("#login-room"), room),
		chromedp.Click(chromedp.CSS("#login")),
	)
	if len(online) == 0 || online[0] {
		tb.waitOnline(room)
	}
}

// waitDirect waits until the open conversation shows a direct message
// with exactly this text.
func (tb *tab) waitDirect(text string) {
	tb.t.Helper()
	tb.waitJS("direct message "+jsString(text), fmt.Sprintf(
		`[...document.querySelectorAll("#dm-messages .dm-msg .body")].some((e) => e.textContent === %s)`, jsString(text)))
}

// expectNoText fails the test if text appears anywhere on the page.
func (tb *tab) expectNoText(text string) {
	tb.t.Helper()
	if eval[bool](tb, fmt.Sprintf(`document.body.textContent.includes(%s)`, jsString(text))) {
		tb.t.Errorf("%s: the page still shows %q", tb.name, text)
	}
}

// msgItemJS is a JavaScript expression for the .msg item whose text is
// text.
func msgItemJS(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg")].find((e) => e.querySelector(".body").textContent === %s)`, jsString(text))
}

// openHub builds a Server for cfg the way main does (Open, so
// DataDir works), its routes seen through wrap when wrap is not nil. As
// in newTestServer, flood control is off unless cfg sets MsgRate. The
// server stops when the test ends, if stop was not called before.
func openHub(t *testing.T, cfg Config, wrap func(http.Handler) http.Handler) *hubServer {
	t.Helper()
	srv, err := Open(cfg, testLogger(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	h := &hubServer{t: t, srv: srv, handler: srv.routes()}
	if wrap != nil {
		h.handler = wrap(h.handler)
	}
	t.Cleanup(h.stop)
	return h
}

// serve serves the hub on ln (a fresh loopback port when nil) and returns
// it as a testServer, for the harness's dial and joined.
func (h *hubServer) serve(t *testing.T, ln net.Listener) *testServer {
	t.Helper()
	ts := httptest.NewUnstartedServer(h.handler)
	if ln != nil {
		ts.Listener.Close()
		ts.Listener = ln
	}
	ts.Start()
	h.served = append(h.served, ts)
	return &testServer{Server: h.srv, ts: ts}
}

// stop shuts down in main's order: close the listeners first, so nobody
// reaches the dying server, then the hub (every client gets 1001, the
// history is flushed). The addresses are free again when it returns.
func (h *hubServer) stop() {
	h.once.Do(func() {
		for _, ts := range h.served {
			ts.Close() // does not wait for hijacked connections
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			h.t.Errorf("shutdown: %v", err)
		}
	})
}

// usersFile writes a users file for name, password pairs, each hashed by
// hubbub's own hash-password subcommand at bcrypt's lowest cost, and
// returns its path.
func usersFile(t *testing.T, pairs ...string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		b.WriteString(pairs[i] + ":" + bcryptHash(t, pairs[i+1]) + "\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// bcryptHash hashes password the way "hubbub hash-password -cost 4" does.
func bcryptHash(t *testing.T, password string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	err := hashPassword([]string{"-cost", strconv.Itoa(bcrypt.MinCost)}, strings.NewReader(password+"\n"), &out, &errOut, nil)
	if err != nil {
		t.Fatalf("hash-password: %v (%s)", err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// maxFrame is the server's default frame limit, which the page assumes.
const maxFrame = 512

// pageIDLen is the length of every message id the page sends (ID_LEN in
// static/hubbub.js): 8 random characters, "-" and a 6-digit counter.
const pageIDLen = 15

// frameSize is the length of the send_message frame the page builds for
// msg, id included: JSON.stringify does not escape <, > and &, so neither
// do we.
func frameSize(t *testing.T, msg string) int {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	frame := struct {
		Type    string            `json:"type"`
		ID      string            `json:"id"`
		Payload map[string]string `json:"payload"`
	}{"send_message", strings.Repeat("x", pageIDLen), map[string]string{"message": msg}}
	if err := enc.Encode(frame); err != nil {
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
	go func() { done <- serve(ctx, deployed(Config{ShutdownTimeout: 5 * time.Second}), testLogger(t), ln) }()
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
