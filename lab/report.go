package lab

import "time"

// The JSON report that `raftlb-lab probe` writes and the scenarios read.

// Attempt is one probe connection: opened, answer read, closed.
type Attempt struct {
	Start time.Time `json:"start"`
	// AtMS is Start as milliseconds since the probe began, for reading
	// the records without date arithmetic.
	AtMS float64 `json:"at_ms"`
	// TookMS is how long the attempt ran until it got its answer or failed.
	TookMS float64 `json:"took_ms"`
	// SourcePort is the local port the attempt was bound to (probe
	// --source-port); 0 when the kernel picked one.
	SourcePort int    `json:"source_port,omitempty"`
	OK         bool   `json:"ok"`
	Answer     string `json:"answer,omitempty"`
	// Error is the class of failure (refused, timeout, reset, unreachable, eof, other), Detail the error text.
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
