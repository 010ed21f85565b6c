package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestErrorsKeepTheirIdentityAcrossRPC: a handler's error reaches the
// caller with its message, and errors.Is finds its sentinel on the
// caller's side: the cluster's own, or one a package above registered on
// both nodes; a code the caller does not know is a plain error.
func TestErrorsKeepTheirIdentityAcrossRPC(t *testing.T) {
	c := newTestCluster(t, 2, nil)
	dc := c.waitDC()
	follower := c.followers(dc)[0]
	errMissing := errors.New("the thing is missing")
	for _, nd := range []*Node{dc, follower} {
		nd.Handle("fail", func(_ context.Context, _ string, body json.RawMessage) (any, error) {
			var what string
			if err := json.Unmarshal(body, &what); err != nil {
				return nil, err
			}
			switch what {
			case "no-dc":
				return nil, fmt.Errorf("asked too early: %w", ErrNoDC)
			case "missing":
				return nil, fmt.Errorf("looked everywhere: %w", errMissing)
			case "refused":
				return nil, fmt.Errorf("%w: not like this", ErrRefused)
			}
			return nil, errors.New("plain")
		})
	}
	dc.RegisterError("test.missing", errMissing)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	call := func(what string) error {
		t.Helper()
		var out any
		err := follower.CallDC(ctx, "fail", what, &out)
		if err == nil {
			t.Fatalf("%s: the handler's error was lost", what)
		}
		return err
	}

	// The follower does not know the code yet: the message, no identity.
	if err := call("missing"); errors.Is(err, errMissing) || err.Error() != "looked everywhere: the thing is missing" {
		t.Errorf("unknown code: %v (is the sentinel: %v), want a plain error with the message", err, errors.Is(err, errMissing))
	}
	follower.RegisterError("test.missing", errMissing)
	for _, tc := range []struct {
		what string
		is   error
		msg  string
	}{
		{"no-dc", ErrNoDC, "asked too early: " + ErrNoDC.Error()},
		{"missing", errMissing, "looked everywhere: the thing is missing"},
		{"refused", ErrRefused, "refused: not like this"},
	} {
		err := call(tc.what)
		if !errors.Is(err, tc.is) || err.Error() != tc.msg {
			t.Errorf("%s: %q (is %q: %v), want %q", tc.what, err, tc.is, errors.Is(err, tc.is), tc.msg)
		}
	}
	if err := call("plain"); errors.Is(err, ErrNoDC) || errors.Is(err, ErrRefused) || err.Error() != "plain" {
		t.Errorf("plain: %v", err)
	}
}

// TestErrorCodes: the table's rules — the first sentinel an error wraps
// names it, a response without a code is a plain error, and a wiring
// mistake (a code or a sentinel with two partners, a malformed code)
// panics at once.
func TestErrorCodes(t *testing.T) {
	codes := newErrorCodes()
	errMine := errors.New("mine")
	codes.add("pkg.mine", errMine)
	codes.add("pkg.mine", errMine) // the same pair again: no change

	both := fmt.Errorf("%w: %w", errMine, ErrNoDC)
	if got := codes.codeOf(both); got != codeNoDC {
		t.Errorf("code of an error wrapping two sentinels: %q, want the first row's %q", got, codeNoDC)
	}
	if got := codes.codeOf(fmt.Errorf("x: %w", errMine)); got != "pkg.mine" {
		t.Errorf("code of a registered sentinel: %q", got)
	}
	if got := codes.codeOf(errors.New("plain")); got != "" {
		t.Errorf("code of a plain error: %q", got)
	}
	if err := codes.remote("", ""); err != nil {
		t.Errorf("no error: %v", err)
	}
	if err := codes.remote("", "old peer"); err == nil || err.Error() != "old peer" || errors.Is(err, ErrNoDC) {
		t.Errorf("an error without a code: %v", err)
	}
	if err := codes.remote(codeNotLeader, "lost it"); !errors.Is(err, raft.ErrNotLeader) || !lostLeadership(err) {
		t.Errorf("raft's sentinel: %v", err)
	}
	if err := codes.remote(codeNoDC, ""); !errors.Is(err, ErrNoDC) || err.Error() != ErrNoDC.Error() {
		t.Errorf("a code without a message: %v", err)
	}
	var re *RemoteError
	if err := codes.remote("pkg.mine", "m"); !errors.As(err, &re) || re.Code != "pkg.mine" {
		t.Errorf("RemoteError: %v", err)
	}
	for _, tc := range []struct {
		name string
		code string
		err  error
	}{
		{"code twice", "pkg.mine", errors.New("other")},
		{"sentinel twice", "pkg.other", errMine},
		{"the cluster's code", codeRefused, errors.New("other")},
		{"malformed", "Pkg Mine", errors.New("other")},
		{"no error", "pkg.none", nil},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: registered", tc.name)
				}
			}()
			codes.add(tc.code, tc.err)
		}()
	}
}
