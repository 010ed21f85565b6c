package main

import (
	"sort"
	"time"

	"github.com/raftlb/raftlb/lab"
)

// The report's types are the lab package's, which the scenarios read the
// files back with: one definition of the file's format.
type (
	Attempt = lab.Attempt
	Report  = lab.Report
)

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
