package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/spec"
)

// Config is everything a Node needs. The zero value is not usable; start
// from DefaultTiming and fill in the identity fields.
type Config struct {
	Name       string
	BindAddr   netip.Addr
	RaftPort   int
	GossipPort int
	DataDir    string

	// BootstrapExpect is the number of servers to wait for before the
	// first-ever bootstrap. Zero means never bootstrap: join an existing
	// cluster.
	BootstrapExpect int
	// MaxVoters caps the Raft voters; further nodes join as non-voters.
	MaxVoters int

	// GossipKey encrypts memberlist traffic; TLS secures Raft. Both must be
	// set unless Insecure is true.
	GossipKey []byte
	// GossipKeys are further keys gossip accepts (a rotation in progress,
	// LoadKeyRing); GossipKey is the one it encrypts with.
	GossipKeys [][]byte
	TLS        *tls.Config
	Insecure   bool

	// Dataplane is advertised to peers so status can say whether a node
	// programs the kernel ("kernel") or runs the control plane only ("none").
	Dataplane string
	// Witness makes this node a voter that never directs and is no real
	// server: the third vote of a two-node cluster. It runs without a
	// data plane.
	Witness bool

	Timing Timing

	// SnapshotThreshold and SnapshotInterval tune Raft snapshots; tests
	// lower them to exercise Snapshot/Restore.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64

	Logger *slog.Logger

	// Filter, set only by in-process tests, simulates network partitions
	// (NetFilter); nil in production.
	Filter *NetFilter
}

// Timing holds the Raft and gossip timings. The defaults are tuned for a LAN
// so that a dead DC is replaced well under a second.
type Timing struct {
	// RaftHeartbeatTimeout is how long a follower waits without hearing from
	// the leader before it stands for election (raft randomises it in
	// [T, 2T]).
	RaftHeartbeatTimeout time.Duration
	RaftElectionTimeout  time.Duration
	// RaftLeaderLease is how long a leader keeps acting without contact from
	// a quorum. It must stay below RaftHeartbeatTimeout so a cut-off DC
	// steps down before anyone else can be elected (invariant 3 of
	// ARCHITECTURE.md). It is also the longest stall (of the DC, or of the
	// one follower that is its quorum) a healthy DC survives: its VIP's
	// safety rests on the answer lease and the verifications
	// (quorum.Lease), not on this, so it stays close to the heartbeat
	// timeout, leaving that timeout's last fifth for the answer's trip
	// and the step-down timer's lateness.
	RaftLeaderLease   time.Duration
	RaftCommitTimeout time.Duration

	GossipProbeInterval time.Duration
	GossipProbeTimeout  time.Duration
	GossipInterval      time.Duration
	GossipSuspicionMult int
}

// DefaultTiming returns LAN timings: a follower notices a silent leader
// 250 ms after its last word (watchLeader; Raft's own timer would take
// 250–625 ms); gossip declares a silent node dead in about a second. The
// commit timeout is short on purpose: the leader's replication loop wakes
// that often per follower, and each answer refreshes the leader's contact
// with that follower, which its leader lease is counted from. At Raft's
// default, 50 ms, an idle agent used 3.6–4.2 % of a core in make bench
// instead of 6.4–6.9 %, but the contact could be 100 ms old (the
// heartbeats' own period, at the lab's ×2 timings) when a stall began, and
// a healthy DC stepped down in a lab soak after a stall of 263 ms against
// its 250 ms lease; at 10 ms it is at most 20 ms old. The leader lease is
// 0.8 of the heartbeat timeout: at half of it (125 ms), a DC stepped down
// in the lab after a follower stalled 289 ms while the other was fenced
// (at the lab's ×2 timings), with nothing wrong but the stall.
func DefaultTiming() Timing {
	return Timing{
		RaftHeartbeatTimeout: 250 * time.Millisecond,
		RaftElectionTimeout:  250 * time.Millisecond,
		RaftLeaderLease:      200 * time.Millisecond,
		RaftCommitTimeout:    10 * time.Millisecond,
		GossipProbeInterval:  200 * time.Millisecond,
		GossipProbeTimeout:   100 * time.Millisecond,
		GossipInterval:       100 * time.Millisecond,
		GossipSuspicionMult:  3,
	}
}

// DefaultMaxVoters keeps Raft at five voters however many nodes join.
const DefaultMaxVoters = 5

// Validate reports the first problem that would stop a node from starting.
func (c *Config) Validate() error {
	var errs []error
	if err := spec.ValidateNodeName(c.Name); err != nil {
		errs = append(errs, err)
	}
	if !c.BindAddr.IsValid() || c.BindAddr.IsUnspecified() {
		errs = append(errs, fmt.Errorf("bind address %q must be a specific IP address of this node", c.BindAddr))
	}
	for _, p := range []struct {
		name string
		port int
	}{{"raft port", c.RaftPort}, {"gossip port", c.GossipPort}} {
		if p.port < 0 || p.port > 65535 {
			errs = append(errs, fmt.Errorf("%s %d out of range 0-65535", p.name, p.port))
		}
	}
	if c.RaftPort != 0 && c.RaftPort == c.GossipPort {
		errs = append(errs, fmt.Errorf("raft port and gossip port are both %d", c.RaftPort))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("a data directory is required"))
	}
	if c.BootstrapExpect < 0 {
		errs = append(errs, fmt.Errorf("bootstrap-expect %d must not be negative", c.BootstrapExpect))
	}
	if c.Witness && c.Dataplane != "none" {
		errs = append(errs, fmt.Errorf("a witness runs without a data plane (--dataplane none), not %q", c.Dataplane))
	}
	if c.MaxVoters < 1 {
		errs = append(errs, fmt.Errorf("max voters %d must be at least 1", c.MaxVoters))
	}
	if !c.Insecure {
		if len(c.GossipKey) == 0 {
			errs = append(errs, errors.New("no gossip key: create one with `raftlb keygen` and pass --key-file (or --insecure for a local trial)"))
		}
		if c.TLS == nil {
			errs = append(errs, errors.New("no TLS configuration: create certificates with `raftlb tls init` and `raftlb tls cert` and pass --tls-dir (or --insecure for a local trial)"))
		}
	}
	t := c.Timing
	if err := quorum.ValidateTimings(t.RaftLeaderLease, t.RaftHeartbeatTimeout, t.RaftElectionTimeout); err != nil {
		errs = append(errs, err)
	}
	if t.RaftCommitTimeout <= 0 || t.GossipProbeInterval <= 0 || t.GossipProbeTimeout <= 0 || t.GossipInterval <= 0 {
		errs = append(errs, errors.New("commit timeout, gossip probe interval, probe timeout and gossip interval must be positive"))
	}
	if t.GossipProbeTimeout >= t.GossipProbeInterval {
		errs = append(errs, fmt.Errorf("gossip probe timeout %s must be shorter than the probe interval %s", t.GossipProbeTimeout, t.GossipProbeInterval))
	}
	if t.GossipSuspicionMult < 1 {
		errs = append(errs, fmt.Errorf("gossip suspicion multiplier %d must be at least 1", t.GossipSuspicionMult))
	}
	return errors.Join(errs...)
}
