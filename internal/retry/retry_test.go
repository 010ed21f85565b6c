package retry

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

var errFlaky = errors.New("not yet")

func TestDoRetriesUntilSuccess(t *testing.T) {
	calls := 0
	err := Do(context.Background(), Policy{Interval: time.Millisecond}, func(_ context.Context, n int) error {
		calls++
		if n != calls {
			t.Errorf("attempt number %d on call %d", n, calls)
		}
		if n < 3 {
			return errFlaky
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Do: %v after %d calls, want success on the third", err, calls)
	}
}

func TestDoStopsAtTheLimit(t *testing.T) {
	calls := 0
	err := Do(context.Background(), Policy{Attempts: 4, Interval: time.Millisecond}, func(context.Context, int) error {
		calls++
		return errFlaky
	})
	if !errors.Is(err, errFlaky) || calls != 4 {
		t.Fatalf("Do: %v after %d calls, want the last error after 4", err, calls)
	}
}

func TestDoStopsOnStop(t *testing.T) {
	calls := 0
	err := Do(context.Background(), Policy{Interval: time.Millisecond}, func(context.Context, int) error {
		calls++
		return Stop(errFlaky)
	})
	if !errors.Is(err, errFlaky) || calls != 1 {
		t.Fatalf("Do: %v after %d calls, want the stopping error at once", err, calls)
	}
	if _, wrapped := err.(stop); wrapped {
		t.Errorf("Do returned the Stop wrapper itself")
	}
}

func TestDoEndsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Do(ctx, Policy{Interval: time.Hour}, func(context.Context, int) error {
		calls++
		cancel()
		return errFlaky
	})
	if !errors.Is(err, errFlaky) || !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Do: %v after %d calls, want the attempt's error and the context's", err, calls)
	}
}

func TestDoGivesEachAttemptItsDeadline(t *testing.T) {
	err := Do(context.Background(), Policy{Attempts: 1, PerAttempt: time.Millisecond}, func(ctx context.Context, int2 int) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Do: %v, want the attempt's own deadline", err)
	}
}

// TestDoWaitsWithThePolicysPause: a Pause set by the caller is how Do
// waits, with the growing interval; its false ends Do.
func TestDoWaitsWithThePolicysPause(t *testing.T) {
	var pauses []time.Duration
	pause := func(_ context.Context, d time.Duration) bool {
		pauses = append(pauses, d)
		return len(pauses) < 3
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Interval: time.Hour, MaxInterval: 4 * time.Hour, Pause: func(c context.Context, d time.Duration) bool {
		ok := pause(c, d)
		if !ok {
			cancel()
		}
		return ok
	}}
	err := Do(ctx, p, func(context.Context, int) error { return errors.New("no") })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want the context's end", err)
	}
	if want := []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour}; !slices.Equal(pauses, want) {
		t.Fatalf("pauses = %v, want %v", pauses, want)
	}
}
