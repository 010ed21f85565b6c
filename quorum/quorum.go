package quorum

import (
	"errors"
	"fmt"
	"time"
)

// HasMajority reports whether reachableVoters is a strict majority of
// voters. With no voters there is nobody to agree, so there is no majority.
func HasMajority(voters, reachableVoters int) bool {
	if voters <= 0 || reachableVoters <= 0 {
		return false
	}
	return reachableVoters > voters/2
}

// View is what a node observed about the cluster at one instant.
type View struct {
	// Voters is the number of voters in the Raft configuration.
	Voters int
	// ReachableVoters counts the voters the leader has heard from within
	// its lease, itself included. Only read when IsLeader.
	ReachableVoters int
	// IsLeader is true when this node is the Raft leader.
	IsLeader bool
	// LeaderKnown is true when a follower knows who the leader is.
	LeaderKnown bool
	// LastLeaderContact is when a follower last heard from the leader.
	LastLeaderContact time.Time
	// Now is the time of the observation; the caller owns the clock.
	Now time.Time
	// ContactTimeout is how stale a follower's last leader contact may be
	// while it still counts as being in the majority's partition.
	ContactTimeout time.Duration
}

// Has reports whether the node described by v has quorum. A leader has
// quorum when a majority of the voters, itself included, is reachable. A
// follower has quorum when it knows a leader and heard from it at most
// ContactTimeout ago. Anything unknown counts as no quorum.
func Has(v View) bool {
	if v.IsLeader {
		return HasMajority(v.Voters, v.ReachableVoters)
	}
	if !v.LeaderKnown || v.LastLeaderContact.IsZero() || v.ContactTimeout <= 0 {
		return false
	}
	// A contact time after Now (a caller mixing clocks) has age < 0 and
	// still counts as recent: the leader was heard from.
	return v.Now.Sub(v.LastLeaderContact) <= v.ContactTimeout
}

// ValidateTimings checks invariant 3 of ARCHITECTURE.md: a leader cut off from the
// majority must give up the VIP before any other node can be elected.
//
// A follower stands for election only after hearing nothing from the leader
// for at least heartbeatTimeout (hashicorp/raft randomises it upwards from
// there) and campaigns for electionTimeout, so the earliest a new leader can
// appear is after the shorter of the two. The leader steps down once its
// last contact with a quorum is leaderLease old, so leaderLease must be
// strictly shorter than both. hashicorp/raft also refuses an election
// timeout shorter than the heartbeat timeout; reporting that here gives the
// operator one clear message instead of a failure at start-up.
func ValidateTimings(leaderLease, heartbeatTimeout, electionTimeout time.Duration) error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"leader lease", leaderLease},
		{"heartbeat timeout", heartbeatTimeout},
		{"election timeout", electionTimeout},
	} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s must be positive", d.name, d.v))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if leaderLease >= heartbeatTimeout {
		errs = append(errs, fmt.Errorf("leader lease %s must be shorter than the heartbeat timeout %s, or a leader cut off from the majority could still hold the VIP when a follower stands for election", leaderLease, heartbeatTimeout))
	}
	if leaderLease >= electionTimeout {
		errs = append(errs, fmt.Errorf("leader lease %s must be shorter than the election timeout %s, or a leader cut off from the majority could still hold the VIP when a new leader is elected", leaderLease, electionTimeout))
	}
	if electionTimeout < heartbeatTimeout {
		errs = append(errs, fmt.Errorf("election timeout %s must not be shorter than the heartbeat timeout %s (raft requires it)", electionTimeout, heartbeatTimeout))
	}
	return errors.Join(errs...)
}
