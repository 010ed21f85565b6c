package health

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		rise, fall int
		startUp    bool
		results    string // '+' success, '-' failure
		want       string // state after each result: 'U' up, 'D' down; upper case marks a change
	}{
		{"fall 1", 1, 1, true, "+-+", "uDU"},
		{"fall boundary", 2, 3, true, "---", "uuD"},
		{"one short of fall", 2, 3, true, "--+--", "uuuuu"},
		{"rise boundary", 3, 2, false, "+++", "ddU"},
		{"one short of rise", 3, 2, false, "++-++", "ddddd"},
		{"down then up", 2, 2, true, "--++", "uDdU"},
		{"alternating never changes", 2, 2, true, "-+-+-+-+-+", "uuuuuuuuuu"},
		{"alternating from down", 2, 2, false, "+-+-+-+-+-", "dddddddddd"},
		{"rise below 1 counts as 1", 0, 0, false, "+-", "UD"},
		{"failures when down stay down", 1, 1, false, "---", "ddd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(tc.rise, tc.fall, State{Up: tc.startUp, Since: t0})
			since := t0
			for i, r := range tc.results {
				now := t0.Add(time.Duration(i+1) * time.Second)
				var err error
				if r == '-' {
					err = fmt.Errorf("probe %d failed", i)
				}
				st, changed := tr.Observe(err, now)
				want := rune(tc.want[i])
				wantUp := want == 'u' || want == 'U'
				wantChanged := want == 'U' || want == 'D'
				if st.Up != wantUp || changed != wantChanged {
					t.Fatalf("after %q: up=%v changed=%v, want up=%v changed=%v", tc.results[:i+1], st.Up, changed, wantUp, wantChanged)
				}
				if changed {
					since = now
				}
				if !st.Since.Equal(since) {
					t.Errorf("after %q: Since %v, want %v (updated only on change)", tc.results[:i+1], st.Since, since)
				}
				if !st.Checked {
					t.Errorf("after %q: Checked false", tc.results[:i+1])
				}
				if st != tr.State() {
					t.Errorf("Observe returned %+v, State() %+v", st, tr.State())
				}
			}
		})
	}
}

func TestTrackerLastError(t *testing.T) {
	now := time.Unix(0, 0)
	tr := NewTracker(1, 1, State{Up: true})
	if st := tr.State(); st.Checked || !st.Up {
		t.Fatalf("initial %+v, want up and unchecked", st)
	}
	st, _ := tr.Observe(nil, now)
	if st.LastError != "" || !st.Checked {
		t.Errorf("after success: %+v", st)
	}
	st, _ = tr.Observe(errors.New("connect: connection refused"), now)
	if st.Up || st.LastError != "connect: connection refused" {
		t.Errorf("after failure: %+v", st)
	}
	// The error stays after recovery, for the status view.
	st, _ = tr.Observe(nil, now)
	if !st.Up || st.LastError != "connect: connection refused" {
		t.Errorf("after recovery: %+v, want up with the last error kept", st)
	}
	st, _ = tr.Observe(errors.New("status 503, want 200"), now)
	if !strings.Contains(st.LastError, "503") {
		t.Errorf("a later failure did not replace the error: %+v", st)
	}
}
