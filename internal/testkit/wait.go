package testkit

import (
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// WaitTimeout is how long WaitFor waits by default. It is generous: a
// test asserts what happens, never how fast.
const WaitTimeout = 10 * time.Second

// WaitFor polls cond every millisecond until it holds, and fails the test
// after WaitTimeout saying what never happened. Use it for preconditions
// and for effects of asynchronous work; where a step can be called
// directly, call it and assert instead.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitForWithin(t, WaitTimeout, what, cond)
}

// WaitForWithin is WaitFor with its own timeout.
func WaitForWithin(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (%s)", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// LogBuffer collects log output from many goroutines.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count is how many times s was written.
func (l *LogBuffer) Count(s string) int { return strings.Count(l.String(), s) }

// Logger returns a debug-level text logger writing to l.
func (l *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Discard is a logger that writes nowhere.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// WaitGone reads a process id from pidFile (a test's program wrote it)
// and fails the test unless that process is gone within 5 s: a timeout
// must kill a program's children too.
func WaitGone(t testing.TB, pidFile, what string) {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("%s: %v", pidFile, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s %d outlived the timeout", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
