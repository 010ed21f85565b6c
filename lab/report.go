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

// The JSON report that `raftlb-lab arpwatch` writes: the wire's view of
// who answers ARP for a VIP, the client-side judge of invariant 1.

// ARPReport is the judge's verdict over its whole run. Every interval the
// client asks who-has VIP; a round is one question and the answers to it
// (told apart from other rounds' by the asking address, so a late answer
// is never counted in the wrong round).
type ARPReport struct {
	VIP        string    `json:"vip"`
	IntervalMS float64   `json:"interval_ms"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Rounds     int       `json:"rounds"`
	// Answers counts, per MAC, the rounds it answered in.
	Answers map[string]int `json:"answers"`
	// TwoMACRounds counts rounds in which two or more MACs answered;
	// TwoMACWindows merges consecutive such rounds.
	TwoMACRounds  int         `json:"two_mac_rounds"`
	TwoMACWindows []ARPWindow `json:"two_mac_windows"`
	// SilentRounds counts rounds nobody answered; SilentWindows merges
	// consecutive ones.
	SilentRounds  int         `json:"silent_rounds"`
	SilentWindows []ARPWindow `json:"silent_windows"`
	// Changes is the story: every change of the set of answering MACs,
	// from one round to the next.
	Changes []ARPChange `json:"changes"`
	// Announcements are the gratuitous ARPs for the VIP the client saw.
	Announcements []ARPAnnouncement `json:"announcements"`
}

// ARPWindow is a run of consecutive rounds alike: from the first one's
// question to one interval after the last one's.
type ARPWindow struct {
	Start      time.Time `json:"start"`
	DurationMS float64   `json:"duration_ms"`
	Rounds     int       `json:"rounds"`
	MACs       []string  `json:"macs,omitempty"`
}

// ARPChange is the round at which the answering MACs changed.
type ARPChange struct {
	At   time.Time `json:"at"`
	MACs []string  `json:"macs"`
}

// ARPAnnouncement is one gratuitous ARP for the VIP.
type ARPAnnouncement struct {
	At  time.Time `json:"at"`
	MAC string    `json:"mac"`
}

// LongestTwoMACMS is the longest two-MAC window, or 0.
func (r ARPReport) LongestTwoMACMS() float64 { return longest(r.TwoMACWindows) }

// LongestSilentMS is the longest window nobody answered in, or 0.
func (r ARPReport) LongestSilentMS() float64 { return longest(r.SilentWindows) }

func longest(ws []ARPWindow) float64 {
	m := 0.0
	for _, w := range ws {
		m = max(m, w.DurationMS)
	}
	return m
}
