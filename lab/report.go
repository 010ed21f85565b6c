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

// The JSON report that `raftlb-lab hold` writes: whether established
// connections through the VIP survive a failover — kept on the same real
// server, never reset.

// HoldReport is hold's verdict on each of its connections. Every
// connection ends in exactly one of: alive, waiting, or failed (counted
// by class in Reset, EOF, Moved and OtherFailures).
type HoldReport struct {
	Target     string  `json:"target"`
	IntervalMS float64 `json:"interval_ms"`
	TimeoutMS  float64 `json:"timeout_ms"`
	// Start is when every connection was open and greeted; End is when
	// hold stopped.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`

	Conns int `json:"conns"`
	// Servers counts connections per server, by the name it greeted with.
	Servers map[string]int `json:"servers"`
	// Alive counts connections that never failed and whose last exchange
	// was answered; Waiting those that never failed but were still
	// waiting for an answer when hold stopped.
	Alive   int `json:"alive"`
	Waiting int `json:"waiting"`
	Reset   int `json:"reset"`
	EOF     int `json:"eof"`
	Moved   int `json:"moved"`
	// OtherFailures counts the failures of any other class (timeout, a
	// garbled answer, …).
	OtherFailures int `json:"other_failures"`

	Records []HoldConn `json:"records"`
}

// HoldConn is one long-lived connection, in the order they were opened.
type HoldConn struct {
	LocalPort int `json:"local_port"`
	// Server is the name the server greeted with; every answer must
	// carry it.
	Server string `json:"server"`
	// Exchanges counts answered lines; LastAnswer is when the last one
	// came, so a scenario can tell a connection that worked after a
	// failover from one that merely was not tested.
	Exchanges  int        `json:"exchanges"`
	LastAnswer *time.Time `json:"last_answer,omitempty"`
	// LongestExchangeMS is the longest one exchange took, from sending a
	// line to its answer — or to its failure, or to the end of hold for
	// one still waiting.
	LongestExchangeMS float64 `json:"longest_exchange_ms"`
	Waiting           bool    `json:"waiting,omitempty"`
	// Error is the class of the connection's failure: reset, eof,
	// timeout, moved (an answer named another server), other; Detail the
	// error text, FailedAt when it happened. A failed connection stops.
	Error    string     `json:"error,omitempty"`
	Detail   string     `json:"detail,omitempty"`
	FailedAt *time.Time `json:"failed_at,omitempty"`
}
