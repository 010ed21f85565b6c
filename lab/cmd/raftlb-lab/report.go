package main

import (
	"sort"
	"time"
)

// Attempt is one probe connection: opened, answer read, closed.
type Attempt struct {
	Start time.Time `json:"start"`
	// AtMS is Start as milliseconds since the probe began, for reading
	// the records without date arithmetic.
	AtMS float64 `json:"at_ms"`
	// TookMS is how long the attempt ran until it got its answer or failed.
	TookMS float64 `json:"took_ms"`
	OK     bool    `json:"ok"`
	Answer string  `json:"answer,omitempty"`
	// Error is the class of failure (see classify), Detail the error text.
	Error  string `json:"error,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// Report is what probe writes: the totals a scenario asserts on, the
// outage figures, and every attempt for anyone who wants to look closer.
type Report struct {
	Target     string    `json:"target"`
	IntervalMS float64   `json:"interval_ms"`
	TimeoutMS  float64   `json:"timeout_ms"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`

	Attempts  int            `json:"attempts"`
	Successes int            `json:"successes"`
	Failures  int            `json:"failures"`
	Answers   map[string]int `json:"answers"`
	Errors    map[string]int `json:"errors"`

	// Outages counts runs of consecutive failed attempts (in start order).
	Outages int `json:"outages"`
	// LongestOutageMS is the longest such run, measured from the start of
	// its first failed attempt to the start of the next successful attempt
	// — what a user retrying every interval would have seen. Its
	// resolution is the probe interval.
	LongestOutageMS float64 `json:"longest_outage_ms"`
	// LongestOutageRecovered is false when the longest run was still going
	// when the probe stopped; it is then measured up to End and is a lower
	// bound. With no outage at all it is true.
	LongestOutageRecovered bool       `json:"longest_outage_recovered"`
	FirstFailure           *time.Time `json:"first_failure,omitempty"`
	LastFailure            *time.Time `json:"last_failure,omitempty"`

	Records []Attempt `json:"records"`
}

// summarize builds the report for attempts made between start and end.
// Attempts run concurrently and finish out of order; they are ordered by
// start time, which is what an outage is measured against.
func summarize(target string, interval, timeout time.Duration, start, end time.Time, attempts []Attempt) Report {
	recs := make([]Attempt, len(attempts))
	copy(recs, attempts)
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].Start.Before(recs[j].Start) })

	r := Report{
		Target:     target,
		IntervalMS: ms(interval),
		TimeoutMS:  ms(timeout),
		Start:      start,
		End:        end,
		Attempts:   len(recs),
		Answers:    map[string]int{},
		Errors:     map[string]int{},
		Records:    recs,

		LongestOutageRecovered: true,
	}

	var runStart time.Time       // zero: not in a run of failures
	longest := time.Duration(-1) // no run closed yet
	closeRun := func(d time.Duration, recovered bool) {
		// On a tie the recovered run wins: its figure is exact.
		if d > longest || (d == longest && recovered) {
			longest = d
			r.LongestOutageMS = ms(d)
			r.LongestOutageRecovered = recovered
		}
	}
	for i := range recs {
		a := &recs[i]
		a.AtMS = ms(a.Start.Sub(start))
		if a.OK {
			r.Successes++
			r.Answers[a.Answer]++
			if !runStart.IsZero() {
				closeRun(a.Start.Sub(runStart), true)
				runStart = time.Time{}
			}
			continue
		}
		r.Failures++
		r.Errors[a.Error]++
		t := a.Start
		if r.FirstFailure == nil {
			r.FirstFailure = &t
		}
		r.LastFailure = &t
		if runStart.IsZero() {
			runStart = a.Start
			r.Outages++
		}
	}
	if !runStart.IsZero() {
		closeRun(end.Sub(runStart), false)
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
