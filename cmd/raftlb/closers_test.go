package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
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
