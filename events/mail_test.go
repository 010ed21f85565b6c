package events

import (
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
)

// smtpServer starts Debian's aiosmtpd on a free loopback port, storing
// what it receives in a maildir, and returns its address and the
// directory of new mail.
func smtpServer(t *testing.T) (addr, maildir string) {
	t.Helper()
	addr = freeAddr(t)
	return addr, smtpServerAt(t, addr)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// smtpServerAt starts aiosmtpd at addr and returns its new-mail directory.
func smtpServerAt(t *testing.T, addr string) string {
	t.Helper()
	if _, err := os.Stat("/usr/lib/python3/dist-packages/aiosmtpd"); err != nil {
		t.Fatalf("Debian's python3-aiosmtpd is not installed (make test installs it): %v", err)
	}
	maildir := filepath.Join(t.TempDir(), "mail")
	cmd := exec.Command("/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", addr, "-c", "aiosmtpd.handlers.Mailbox", maildir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testkit.WaitFor(t, "the SMTP server to listen", func() bool {
		c, err := testkit.Dial(t, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return filepath.Join(maildir, "new")
}

// windows is the mailer's clock in tests: it records the length of each
// window (or retry) the mailer opens, and a window ends when the test
// ends it.
type windows struct {
	mu     sync.Mutex
	opened []time.Duration
	ends   []chan time.Time
}

func (w *windows) after(d time.Duration) <-chan time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := make(chan time.Time, 1)
	w.opened, w.ends = append(w.opened, d), append(w.ends, c)
	return c
}

// lengths lists the windows opened so far.
func (w *windows) lengths() []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.opened)
}

// end ends the i-th window.
func (w *windows) end(i int) {
	w.mu.Lock()
	c := w.ends[i]
	w.mu.Unlock()
	c <- time.Now()
}

// queued is how many published events the bus's one subscriber has not
// taken yet.
func queued(b *Bus) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		return len(s.c)
	}
	return 0
}

func mails(t *testing.T, dir string) []string {
	entries, _ := os.ReadDir(dir)
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(data))
	}
	return out
}

// TestMailCoalescesAFlappingServer: a real server that flaps ten times
// within the window sends one mail, through a real SMTP server, naming
// every change.
func TestMailCoalescesAFlappingServer(t *testing.T) {
	addr, dir := smtpServer(t)
	b := NewBus("n1", 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &windows{}
	m := Mail{Relay: addr, From: "raftlb@n1.example", To: []string{"ops@example.org"}, Window: time.Second, after: clock.after}
	if err := CheckMail(m); err != nil {
		t.Fatal(err)
	}
	go RunMail(ctx, b, m, testkit.Discard())
	testkit.WaitFor(t, "the mailer subscribed", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 })
	for i := range 10 {
		typ := ServerDown
		if i%2 == 1 {
			typ = ServerUp
		}
		b.Publish(Event{Type: typ, Server: "172.95.69.30:80", Message: "real server " + typ})
	}
	testkit.WaitFor(t, "the mailer to take the ten events", func() bool { return queued(b) == 0 })
	if got := clock.lengths(); !slices.Equal(got, []time.Duration{m.Window}) {
		t.Fatalf("ten events opened windows %v, want one of %s", got, m.Window)
	}
	clock.end(0)
	// The first mail holds all ten events, so no second one can come.
	testkit.WaitFor(t, "a mail", func() bool { return len(mails(t, dir)) > 0 })
	got := mails(t, dir)
	if len(got) != 1 {
		t.Fatalf("%d mails for one flapping window, want 1", len(got))
	}
	if !strings.Contains(got[0], "Subject: raftlb n1: 10 event(s): server_down, server_up") || strings.Count(got[0], "server=172.95.69.30:80") != 10 {
		t.Errorf("the mail:\n%s", got[0])
	}
}

// TestMailRelayDownIsRetriedAndBlocksNothing: with the relay down, the
// failure is logged and retried with the events kept, publishing never
// waits; once the relay is up the mail goes out.
func TestMailRelayDownIsRetriedAndBlocksNothing(t *testing.T) {
	addr := freeAddr(t) // nothing listens there yet
	var log syncBuf
	b := NewBus("n1", 50)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clock := &windows{}
	m := Mail{Relay: addr, From: "raftlb@n1.example", To: []string{"ops@example.org"}, Window: 100 * time.Millisecond, Timeout: time.Second, after: clock.after}
	go RunMail(ctx, b, m, slog.New(slog.NewTextHandler(&log, nil)))
	testkit.WaitFor(t, "the mailer subscribed", func() bool { b.mu.Lock(); defer b.mu.Unlock(); return len(b.subs) == 1 })
	start := time.Now()
	b.Publish(Event{Type: DCGained, Message: "this node is now the DC"})
	if time.Since(start) > 50*time.Millisecond {
		t.Error("publishing waited for the relay")
	}
	testkit.WaitFor(t, "the window opened", func() bool { return len(clock.lengths()) == 1 })
	clock.end(0)
	// The mailer logs the failure, then opens the retry's window.
	testkit.WaitFor(t, "the retry's window opened", func() bool { return len(clock.lengths()) == 2 })
	if got := clock.lengths(); got[1] != 2*m.Window {
		t.Errorf("windows %v, want the retry after twice the window", got)
	}
	if l := log.String(); !strings.Contains(l, "mail alert not sent; retrying with the events kept") || !strings.Contains(l, "connection refused") {
		t.Errorf("the failure is not logged with its cause:\n%s", l)
	}
	dir := smtpServerAt(t, addr)
	clock.end(1)
	testkit.WaitFor(t, "the mail, once the relay is up", func() bool {
		got := mails(t, dir)
		return len(got) == 1 && strings.Contains(got[0], "dc_gained: this node is now the DC")
	})
	if err := CheckMail(Mail{Relay: "mail.example", From: "a@b", To: []string{"c@d"}}); err == nil {
		t.Error("a relay without a port was accepted")
	}
	if err := CheckMail(Mail{Relay: "mail.example:25", From: "a@b", To: []string{"c@d\r\nBcc: e@f"}}); err == nil {
		t.Error("a recipient with a header injection was accepted")
	}
}
