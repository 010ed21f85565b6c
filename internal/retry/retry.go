// Package retry runs an attempt until it succeeds, as rqlite's
// cluster/join.go does for joins: with a context, a limit on attempts and
// a pause between them. Every retry loop of the agent goes through it, so
// each says in one line how often and how long it tries.
package retry

import (
	"context"
	"errors"
	"time"
)

// Policy says how to retry. Attempts 0 means until the context ends.
// Each attempt may get its own deadline (PerAttempt, 0: none). With
// MaxInterval set the pause doubles after every attempt, up to it.
type Policy struct {
	Attempts    int
	Interval    time.Duration
	MaxInterval time.Duration
	PerAttempt  time.Duration
	// Pause waits between attempts and reports false if ctx ended
	// meanwhile; nil waits on a timer. A caller that must keep answering
	// something while it retries (the DC's term, its inbox) waits its own
	// way.
	Pause func(ctx context.Context, d time.Duration) bool
}

// stop marks an error after which retrying cannot help.
type stop struct{ err error }

func (s stop) Error() string { return s.err.Error() }
func (s stop) Unwrap() error { return s.err }

// Stop wraps err so Do returns it at once instead of trying again.
func Stop(err error) error { return stop{err} }

// Do calls attempt (with its attempt number, from 1) until it returns nil,
// returns an error wrapped by Stop, the attempts run out or ctx ends, and
// returns the last error: nil on success; when ctx ends first, the last
// attempt's error joined with ctx's.
func Do(ctx context.Context, p Policy, attempt func(ctx context.Context, n int) error) error {
	var last error
	pause := p.Interval
	for n := 1; p.Attempts == 0 || n <= p.Attempts; n++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if p.PerAttempt > 0 {
			actx, cancel = context.WithTimeout(ctx, p.PerAttempt)
		}
		err := attempt(actx, n)
		cancel()
		var s stop
		switch {
		case err == nil:
			return nil
		case errors.As(err, &s):
			return s.err
		}
		last = err
		if p.Attempts != 0 && n == p.Attempts {
			break
		}
		if !p.wait(ctx, pause) {
			return errors.Join(last, ctx.Err())
		}
		if p.MaxInterval > 0 {
			pause = min(2*pause, p.MaxInterval)
		}
	}
	return last
}

func (p Policy) wait(ctx context.Context, d time.Duration) bool {
	if p.Pause != nil {
		return p.Pause(ctx, d) && ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
