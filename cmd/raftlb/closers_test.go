package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/raftlb/raftlb/internal/testkit"
)

// TestClosersRunInReverse: the last closer pushed runs first, each runs
// once, and a failing one neither stops the rest nor loses its error.
func TestClosersRunInReverse(t *testing.T) {
	var ran []string
	failed := errors.New("b failed")
	c := closers{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, name := range []string{"a", "b", "c"} {
		c.push(name, func(context.Context) error {
			ran = append(ran, name)
			if name == "b" {
				return failed
			}
			return nil
		})
	}
	err := c.close(context.Background())
	if want := []string{"c", "b", "a"}; !slices.Equal(ran, want) {
		t.Errorf("closers ran %q, want %q", ran, want)
	}
	if !errors.Is(err, failed) {
		t.Errorf("close: %v, want b's error", err)
	}
	ran = nil
	if err := c.close(context.Background()); err != nil || len(ran) > 0 {
		t.Errorf("a second close ran %q (%v); want nothing", ran, err)
	}
}

// closedInOrder is the names of the closers an agent ran, in order, from
// its debug log.
func closedInOrder(log string) []string {
	var names []string
	for _, m := range regexp.MustCompile(`msg=closing closer=(?:"([^"]*)"|(\S+))`).FindAllStringSubmatch(log, -1) {
		names = append(names, m[1]+m[2])
	}
	return names
}

// TestFailedStartRunsTheClosersPushedSoFar: an agent whose admin API
// cannot listen — the last step of its start that can fail — runs, in
// reverse, exactly the closers of what it had started: the admin API's is
// not among them.
func TestFailedStartRunsTheClosersPushedSoFar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real agent")
	}
	d := newAgentDirs(t)
	if err := os.WriteFile(d.sock, nil, 0o600); err != nil {
		t.Fatal(err) // a file that is not a socket: api.Listen refuses it
	}
	logs := &testkit.LogBuffer{}
	code := run(d.args("--dataplane", "fake", "--http", "127.0.0.1:0", "--log-level", "debug"), io.Discard, logs)
	if code != 1 {
		t.Fatalf("exit %d, want 1; log:\n%s", code, logs.String())
	}
	want := []string{
		"web", "DC duties", "director", "notifiers", "DC watch", "drain", "leave gossip",
		"real-server side", "agent context", "Raft and gossip",
		"real-server side, if the node never ran", "IPVS handle", "SIGHUP handler",
	}
	if got := closedInOrder(logs.String()); !slices.Equal(got, want) {
		t.Errorf("closers run after the failed start:\n got %q\nwant %q", got, want)
	}
}
