package quorum

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// NoQuorumPolicy says what a node does with its VIPs while it has no quorum.
// The names and meanings follow Pacemaker's no-quorum-policy.
type NoQuorumPolicy string

const (
	// Stop releases every VIP and takes none: the safe default, because a
	// node cut off from the majority cannot know whether another node has
	// already taken over.
	Stop NoQuorumPolicy = "stop"
	// Freeze keeps the VIPs already held and takes no new ones. It keeps
	// serving through a partition at the price of a possible second holder
	// on the other side.
	Freeze NoQuorumPolicy = "freeze"
	// Ignore acts as if quorum were present. Only sensible for a lone node
	// or a two-node lab with fencing; it gives up split-brain protection.
	Ignore NoQuorumPolicy = "ignore"
)

// ParsePolicy reads a no-quorum policy as an operator writes it. Case and
// surrounding spaces do not matter; the empty string means Stop.
func ParsePolicy(s string) (NoQuorumPolicy, error) {
	switch p := NoQuorumPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case "":
		return Stop, nil
	case Stop, Freeze, Ignore:
		return p, nil
	default:
		return "", fmt.Errorf("unknown no-quorum policy %q (want %q, %q or %q)", s, Stop, Freeze, Ignore)
	}
}

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

// Action is what a node does with its VIPs, as decided by Decide.
type Action int

const (
	// Hold: keep the VIPs held and take those assigned to this node.
	Hold Action = iota
	// Keep: keep the VIPs already held but take no new ones (freeze).
	Keep
	// Release: give up every VIP held and take none.
	Release
	// Abstain: hold nothing and take nothing.
	Abstain
)

func (a Action) String() string {
	switch a {
	case Hold:
		return "hold"
	case Keep:
		return "keep"
	case Release:
		return "release"
	case Abstain:
		return "abstain"
	default:
		return fmt.Sprintf("Action(%d)", int(a))
	}
}

// Decision is the outcome of Decide. MayTake and MustRelease are never both
// true; Action sums them up and Reason is meant for the log and status.
type Decision struct {
	Action      Action
	MayTake     bool
	MustRelease bool
	Reason      string
}

// Decide applies policy p to the node's situation. With quorum a node may
// take and hold VIPs. Without it:
//   - stop releases everything and takes nothing;
//   - freeze keeps what is held and takes nothing new;
//   - ignore acts as if quorum were present, and says so in Reason.
//
// An unknown policy is treated as stop: when in doubt, let go.
func Decide(p NoQuorumPolicy, haveQuorum bool, holdingVIP bool) Decision {
	if haveQuorum {
		return Decision{Action: Hold, MayTake: true, Reason: "quorum present"}
	}
	switch p {
	case Ignore:
		return Decision{Action: Hold, MayTake: true,
			Reason: "NO QUORUM, acting anyway because no-quorum-policy is ignore: split brain is possible"}
	case Freeze:
		if holdingVIP {
			return Decision{Action: Keep, Reason: "no quorum: keeping the VIPs held, taking no new ones (no-quorum-policy freeze)"}
		}
		return Decision{Action: Abstain, Reason: "no quorum: taking no VIPs (no-quorum-policy freeze)"}
	case Stop:
		if holdingVIP {
			return Decision{Action: Release, MustRelease: true, Reason: "no quorum: releasing every VIP (no-quorum-policy stop)"}
		}
		return Decision{Action: Abstain, Reason: "no quorum: taking no VIPs (no-quorum-policy stop)"}
	default:
		reason := fmt.Sprintf("no quorum and unknown no-quorum-policy %q: behaving as stop", p)
		if holdingVIP {
			return Decision{Action: Release, MustRelease: true, Reason: reason}
		}
		return Decision{Action: Abstain, Reason: reason}
	}
}

// ValidateTimings checks DESIGN invariant 3: a leader cut off from the
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

// ReleaseDeadline is the instant by which a node that last confirmed quorum
// at lastQuorumContact must have released its VIPs: one lease later. With
// ValidateTimings satisfied, that is before any other node can be elected.
func ReleaseDeadline(lastQuorumContact time.Time, lease time.Duration) time.Time {
	return lastQuorumContact.Add(lease)
}
