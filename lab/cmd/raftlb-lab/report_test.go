package main

import (
	"maps"
	"testing"
	"time"
)

// seq builds attempts from a compact script: each step is the attempt's
// start in ms since t0 and its answer ("" = failed with a timeout).
type step struct {
	at     int
	answer string
}

var t0 = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func at(msec int) time.Time { return t0.Add(time.Duration(msec) * time.Millisecond) }

func seq(steps ...step) []Attempt {
	var as []Attempt
	for _, s := range steps {
		a := Attempt{Start: at(s.at), OK: s.answer != "", Answer: s.answer}
		if !a.OK {
			a.Error = "timeout"
		}
		as = append(as, a)
	}
	return as
}

func TestSummarizeOutages(t *testing.T) {
	tests := []struct {
		name      string
		attempts  []Attempt
		endMS     int
		outages   int
		longestMS float64
		recovered bool
		firstMS   int // -1: no failure
		lastMS    int
	}{
		{
			name:      "no attempts",
			endMS:     100,
			recovered: true,
			firstMS:   -1,
		},
		{
			name:      "all answered",
			attempts:  seq(step{0, "m40"}, step{20, "m50"}, step{40, "m40"}),
			endMS:     60,
			recovered: true,
			firstMS:   -1,
		},
		{
			// From the first failure's start (20) to the next success's
			// start (80), not to the last failure (60).
			name:      "one outage, recovered",
			attempts:  seq(step{0, "m40"}, step{20, ""}, step{40, ""}, step{60, ""}, step{80, "m50"}),
			endMS:     100,
			outages:   1,
			longestMS: 60,
			recovered: true,
			firstMS:   20,
			lastMS:    60,
		},
		{
			name: "the longer of two outages",
			attempts: seq(step{0, ""}, step{20, "m40"}, step{40, ""}, step{60, ""}, step{80, ""},
				step{100, "m50"}, step{120, ""}, step{140, "m40"}),
			endMS:     160,
			outages:   3,
			longestMS: 60,
			recovered: true,
			firstMS:   0,
			lastMS:    120,
		},
		{
			// Still failing when the probe stops: measured up to the end
			// and flagged, because the true outage is longer.
			name:      "outage still going at the end",
			attempts:  seq(step{0, "m40"}, step{20, ""}, step{40, ""}),
			endMS:     75,
			outages:   1,
			longestMS: 55,
			recovered: false,
			firstMS:   20,
			lastMS:    40,
		},
		{
			name:      "a recovered outage longer than the unfinished one",
			attempts:  seq(step{0, ""}, step{20, ""}, step{40, ""}, step{60, "m40"}, step{80, ""}),
			endMS:     100,
			outages:   2,
			longestMS: 60,
			recovered: true,
			firstMS:   0,
			lastMS:    80,
		},
		{
			name:      "a tie goes to the recovered outage",
			attempts:  seq(step{0, ""}, step{20, "m40"}, step{40, ""}),
			endMS:     60,
			outages:   2,
			longestMS: 20,
			recovered: true,
			firstMS:   0,
			lastMS:    40,
		},
		{
			name:      "nothing ever answered",
			attempts:  seq(step{0, ""}, step{20, ""}, step{40, ""}),
			endMS:     250,
			outages:   1,
			longestMS: 250,
			recovered: false,
			firstMS:   0,
			lastMS:    40,
		},
		{
			// Concurrent attempts report in completion order: a timeout
			// started at 20 finishes after the success started at 40.
			name:      "attempts ordered by start, not by completion",
			attempts:  seq(step{0, "m40"}, step{40, "m50"}, step{20, ""}, step{60, "m40"}),
			endMS:     80,
			outages:   1,
			longestMS: 20,
			recovered: true,
			firstMS:   20,
			lastMS:    20,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := summarize("172.95.69.100:80", 20*time.Millisecond, 200*time.Millisecond, t0, at(tt.endMS), tt.attempts)
			if r.Outages != tt.outages || r.LongestOutageMS != tt.longestMS || r.LongestOutageRecovered != tt.recovered {
				t.Errorf("outages %d, longest %v ms, recovered %v; want %d, %v ms, %v",
					r.Outages, r.LongestOutageMS, r.LongestOutageRecovered, tt.outages, tt.longestMS, tt.recovered)
			}
			if tt.firstMS < 0 {
				if r.FirstFailure != nil || r.LastFailure != nil {
					t.Errorf("first/last failure %v/%v, want none", r.FirstFailure, r.LastFailure)
				}
				return
			}
			if r.FirstFailure == nil || !r.FirstFailure.Equal(at(tt.firstMS)) {
				t.Errorf("first failure %v, want +%d ms", r.FirstFailure, tt.firstMS)
			}
			if r.LastFailure == nil || !r.LastFailure.Equal(at(tt.lastMS)) {
				t.Errorf("last failure %v, want +%d ms", r.LastFailure, tt.lastMS)
			}
		})
	}
}

func TestSummarizeCounts(t *testing.T) {
	as := seq(step{40, "m50"}, step{0, "m40"}, step{20, ""}, step{60, "m40"})
	as[2].Error = "refused"
	r := summarize("172.95.69.100:80", 20*time.Millisecond, 200*time.Millisecond, t0, at(80), as)

	if r.Attempts != 4 || r.Successes != 3 || r.Failures != 1 {
		t.Errorf("attempts/successes/failures = %d/%d/%d, want 4/3/1", r.Attempts, r.Successes, r.Failures)
	}
	if want := map[string]int{"m40": 2, "m50": 1}; !maps.Equal(r.Answers, want) {
		t.Errorf("answers %v, want %v", r.Answers, want)
	}
	if want := map[string]int{"refused": 1}; !maps.Equal(r.Errors, want) {
		t.Errorf("errors %v, want %v", r.Errors, want)
	}
	if r.IntervalMS != 20 || r.TimeoutMS != 200 {
		t.Errorf("interval/timeout = %v/%v ms, want 20/200", r.IntervalMS, r.TimeoutMS)
	}
	// Records come back in start order with their offsets filled in, and
	// the caller's slice is left alone.
	for i, want := range []float64{0, 20, 40, 60} {
		if r.Records[i].AtMS != want {
			t.Errorf("record %d at %v ms, want %v", i, r.Records[i].AtMS, want)
		}
	}
	if !as[0].Start.Equal(at(40)) {
		t.Errorf("summarize reordered its input")
	}
}
