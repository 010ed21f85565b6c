package quorum

import (
	"strings"
	"testing"
	"time"
)

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
