package quorum

import (
	"strings"
	"testing"
	"time"
)

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		in      string
		want    NoQuorumPolicy
		wantErr bool
	}{
		{"", Stop, false},
		{"stop", Stop, false},
		{"freeze", Freeze, false},
		{"ignore", Ignore, false},
		{"  Freeze\n", Freeze, false},
		{"IGNORE", Ignore, false},
		{"   ", Stop, false},
		{"demote", "", true},
		{"suicide", "", true},
		{"stopp", "", true},
	}
	for _, tt := range tests {
		got, err := ParsePolicy(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParsePolicy(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if err != nil {
			if !strings.Contains(err.Error(), "stop") || !strings.Contains(err.Error(), tt.in) {
				t.Errorf("ParsePolicy(%q) error %q should name the input and the valid policies", tt.in, err)
			}
			continue
		}
		if got != tt.want {
			t.Errorf("ParsePolicy(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHasMajority(t *testing.T) {
	tests := []struct {
		voters, reachable int
		want              bool
	}{
		{0, 0, false},
		{0, 1, false},
		{-1, 1, false},
		{1, 0, false},
		{1, 1, true},
		{2, 1, false}, // half is not a majority
		{2, 2, true},
		{3, 1, false},
		{3, 2, true},
		{3, 3, true},
		{4, 2, false},
		{4, 3, true},
		{5, 2, false},
		{5, 3, true},
		{5, -1, false},
	}
	for _, tt := range tests {
		if got := HasMajority(tt.voters, tt.reachable); got != tt.want {
			t.Errorf("HasMajority(%d, %d) = %v, want %v", tt.voters, tt.reachable, got, tt.want)
		}
	}
}

func TestHas(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	const timeout = 500 * time.Millisecond
	follower := func(known bool, age time.Duration) View {
		return View{Voters: 3, LeaderKnown: known, LastLeaderContact: now.Add(-age), Now: now, ContactTimeout: timeout}
	}
	tests := []struct {
		name string
		v    View
		want bool
	}{
		{"leader with all voters", View{IsLeader: true, Voters: 3, ReachableVoters: 3}, true},
		{"leader with a bare majority", View{IsLeader: true, Voters: 3, ReachableVoters: 2}, true},
		{"leader alone of three", View{IsLeader: true, Voters: 3, ReachableVoters: 1}, false},
		{"leader with half of four", View{IsLeader: true, Voters: 4, ReachableVoters: 2}, false},
		{"single-voter leader", View{IsLeader: true, Voters: 1, ReachableVoters: 1}, true},
		{"leader with no voters", View{IsLeader: true}, false},
		{"leader ignores contact fields", View{IsLeader: true, Voters: 3, ReachableVoters: 1, LeaderKnown: true, LastLeaderContact: now, Now: now, ContactTimeout: timeout}, false},
		{"follower just heard from leader", follower(true, 0), true},
		{"follower within timeout", follower(true, timeout-time.Nanosecond), true},
		{"follower exactly at timeout", follower(true, timeout), true},
		{"follower past timeout", follower(true, timeout+time.Nanosecond), false},
		{"follower without a leader", follower(false, 0), false},
		{"follower contact in the future", follower(true, -time.Second), true},
		{"follower never contacted", View{Voters: 3, LeaderKnown: true, Now: now, ContactTimeout: timeout}, false},
		{"follower with zero timeout", View{Voters: 3, LeaderKnown: true, LastLeaderContact: now, Now: now}, false},
		{"follower with negative timeout", View{Voters: 3, LeaderKnown: true, LastLeaderContact: now, Now: now, ContactTimeout: -timeout}, false},
		{"follower reachable voters do not matter", View{Voters: 3, ReachableVoters: 3, Now: now, ContactTimeout: timeout}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Has(tt.v); got != tt.want {
				t.Errorf("Has(%+v) = %v, want %v", tt.v, got, tt.want)
			}
		})
	}
}

func TestDecide(t *testing.T) {
	tests := []struct {
		policy      NoQuorumPolicy
		quorum      bool
		holding     bool
		action      Action
		mayTake     bool
		mustRelease bool
		reason      string // substring of Reason
	}{
		{Stop, true, true, Hold, true, false, "quorum present"},
		{Stop, true, false, Hold, true, false, "quorum present"},
		{Freeze, true, true, Hold, true, false, "quorum present"},
		{Freeze, true, false, Hold, true, false, "quorum present"},
		{Ignore, true, true, Hold, true, false, "quorum present"},
		{Ignore, true, false, Hold, true, false, "quorum present"},

		{Stop, false, true, Release, false, true, "stop"},
		{Stop, false, false, Abstain, false, false, "stop"},
		{Freeze, false, true, Keep, false, false, "freeze"},
		{Freeze, false, false, Abstain, false, false, "freeze"},
		{Ignore, false, true, Hold, true, false, "NO QUORUM"},
		{Ignore, false, false, Hold, true, false, "split brain"},

		{"", false, true, Release, false, true, "unknown"},
		{"bogus", false, false, Abstain, false, false, "bogus"},
		{"bogus", true, true, Hold, true, false, "quorum present"},
	}
	for _, tt := range tests {
		got := Decide(tt.policy, tt.quorum, tt.holding)
		if got.Action != tt.action || got.MayTake != tt.mayTake || got.MustRelease != tt.mustRelease {
			t.Errorf("Decide(%q, quorum=%v, holding=%v) = %+v, want action %s mayTake %v mustRelease %v",
				tt.policy, tt.quorum, tt.holding, got, tt.action, tt.mayTake, tt.mustRelease)
		}
		if got.MayTake && got.MustRelease {
			t.Errorf("Decide(%q, %v, %v): MayTake and MustRelease both true", tt.policy, tt.quorum, tt.holding)
		}
		if !strings.Contains(got.Reason, tt.reason) {
			t.Errorf("Decide(%q, %v, %v).Reason = %q, want it to mention %q", tt.policy, tt.quorum, tt.holding, got.Reason, tt.reason)
		}
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		a    Action
		want string
	}{
		{Hold, "hold"}, {Keep, "keep"}, {Release, "release"}, {Abstain, "abstain"}, {Action(42), "Action(42)"},
	}
	for _, tt := range tests {
		if got := tt.a.String(); got != tt.want {
			t.Errorf("Action(%d).String() = %q, want %q", int(tt.a), got, tt.want)
		}
	}
}

func TestValidateTimings(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name                       string
		lease, heartbeat, election time.Duration
		wantErr                    []string // substrings; nil means valid
	}{
		{"defaults", 125 * ms, 250 * ms, 250 * ms, nil},
		{"raft defaults", 500 * ms, 1000 * ms, 1000 * ms, nil},
		{"lease just under both", 249 * ms, 250 * ms, 250 * ms, nil},
		{"election longer than heartbeat", 100 * ms, 200 * ms, 1000 * ms, nil},
		{"lease equals heartbeat", 250 * ms, 250 * ms, 500 * ms, []string{"leader lease 250ms", "heartbeat timeout 250ms"}},
		{"lease over heartbeat", 300 * ms, 250 * ms, 500 * ms, []string{"leader lease 300ms", "shorter than the heartbeat timeout 250ms"}},
		{"lease equals both", 250 * ms, 250 * ms, 250 * ms, []string{"heartbeat timeout 250ms", "election timeout 250ms"}},
		{"election under heartbeat", 100 * ms, 250 * ms, 200 * ms, []string{"election timeout 200ms must not be shorter than the heartbeat timeout 250ms"}},
		{"lease over election only", 220 * ms, 200 * ms, 200 * ms, []string{"leader lease 220ms", "election timeout 200ms"}},
		{"zero lease", 0, 250 * ms, 250 * ms, []string{"leader lease 0s must be positive"}},
		{"negative heartbeat", 125 * ms, -1 * ms, 250 * ms, []string{"heartbeat timeout -1ms must be positive"}},
		{"all zero", 0, 0, 0, []string{"leader lease", "heartbeat timeout", "election timeout"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTimings(tt.lease, tt.heartbeat, tt.election)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("ValidateTimings(%s, %s, %s) = %v, want nil", tt.lease, tt.heartbeat, tt.election, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateTimings(%s, %s, %s) = nil, want an error", tt.lease, tt.heartbeat, tt.election)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestReleaseDeadline(t *testing.T) {
	base := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		last  time.Time
		lease time.Duration
		want  time.Time
	}{
		{base, 125 * time.Millisecond, base.Add(125 * time.Millisecond)},
		{base, 0, base},
		{base, time.Nanosecond, base.Add(time.Nanosecond)},
	}
	for _, tt := range tests {
		if got := ReleaseDeadline(tt.last, tt.lease); !got.Equal(tt.want) {
			t.Errorf("ReleaseDeadline(%s, %s) = %s, want %s", tt.last, tt.lease, got, tt.want)
		}
	}

	// With valid timings, the deadline falls before the earliest moment a
	// follower that heard the same last contact could stand for election.
	lease, hb, el := 125*time.Millisecond, 250*time.Millisecond, 250*time.Millisecond
	if err := ValidateTimings(lease, hb, el); err != nil {
		t.Fatal(err)
	}
	if d := ReleaseDeadline(base, lease); !d.Before(base.Add(hb)) {
		t.Errorf("release deadline %s is not before the earliest election %s", d, base.Add(hb))
	}
}
