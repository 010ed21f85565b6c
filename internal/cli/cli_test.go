package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	cmds := map[string]Command{
		"ok": func(context.Context, []string, io.Writer, io.Writer) error { return nil },
		"usage": func(context.Context, []string, io.Writer, io.Writer) error {
			return fmt.Errorf("%w: bad flag", ErrUsage)
		},
		"fail":     func(context.Context, []string, io.Writer, io.Writer) error { return errors.New("it broke") },
		"degraded": func(context.Context, []string, io.Writer, io.Writer) error { return &ExitError{Code: 1} },
		"unknown": func(context.Context, []string, io.Writer, io.Writer) error {
			return &ExitError{Code: 3, Err: errors.New("cannot reach the agent")}
		},
		"flags": func(_ context.Context, args []string, _, stderr io.Writer) error {
			fs := NewFlagSet("prog flags", stderr)
			return ParseFlags(fs, args)
		},
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "Usage"},
		{[]string{"ok"}, 0, ""},
		{[]string{"usage"}, 2, "prog: usage: bad flag"},
		{[]string{"fail"}, 1, "prog: it broke"},
		{[]string{"degraded"}, 1, ""},
		{[]string{"unknown"}, 3, "prog: cannot reach the agent"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"flags", "-h"}, 0, "Usage of prog flags"},
		{[]string{"flags", "--bogus"}, 2, "prog: usage: flag provided but not defined"},
	} {
		var stdout, stderr bytes.Buffer
		if code := Run(context.Background(), "prog", "Usage: prog CMD\n", cmds, tc.args, &stdout, &stderr); code != tc.code || !strings.Contains(stderr.String(), tc.stderr) {
			t.Errorf("%q: exit %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.stderr)
		}
	}
}
