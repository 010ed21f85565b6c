package director

import (
	"context"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

// What the director needs of the cluster node, one role at a time (as
// seesaw's engine sees its kernel through ncc/client): each is small
// enough that a test fakes it in a few lines, and a reader sees which part
// of the cluster a step leans on. cluster.Node is all four.

// Leader is Raft leadership as a term sees it: the events (with their
// term), the Barrier, a verification in a term, and handing the role on.
type Leader interface {
	Leadership() (<-chan cluster.LeaderEvent, func())
	Barrier(timeout time.Duration) error
	VerifyLeader(term uint64) error
	// Leader is the node this one knows as DC ("" none).
	Leader() string
	// TransferLeadership gives the DC role to another voter because this
	// node cannot carry out its duties (reason says why);
	// TransferLeadershipTo hands it to one that can direct.
	TransferLeadership(reason string) error
	TransferLeadershipTo(to, reason string) error
	// MoveDC hands the DC role, gracefully, to a node that can direct.
	MoveDC(ctx context.Context, to string) (string, error)
	// OnHandOver registers a function called with true just before a
	// hand-over on purpose begins and with false if it failed.
	OnHandOver(fn func(begun bool))
	// ContactBound bounds from above when holder, a former leader, last
	// sent a verification that succeeded (cluster/contact.go); false
	// when a majority of the other voters did not answer in time.
	ContactBound(ctx context.Context, holder string) (time.Time, bool)
	// LastLeaderLost is the last leader this node stopped following, its
	// last contact and when: a takeover's first phases (phases.go).
	LastLeaderLost() cluster.LeaderLost
}

// Log is the replicated state and what a DC commits to it (VIP holders,
// fencing records).
type Log interface {
	FSM() *fsm.FSM
	Commit(t fsm.CommandType, payload any) (uint64, error)
}

// Members is gossip's view of the nodes and the membership step only the
// DC runs.
type Members interface {
	// Name is this node's name.
	Name() string
	OnlineNodes() map[string]bool
	// StoppingNodes lists the nodes whose agents are stopping: drained.
	StoppingNodes() map[string]bool
	// LiveMembers lists the live members.
	LiveMembers() map[string]bool
	SubscribeMembership() (<-chan struct{}, func())
	// ReconcileMembers admits live nodes to Raft and promotes non-voters.
	ReconcileMembers(ctx context.Context)
	// CanDirect is whether this node can hold the VIPs (and why not);
	// SetCannotDirect tells the peers it cannot ("": it can again).
	// Directors lists the live voters that can.
	CanDirect() (bool, string)
	SetCannotDirect(reason string)
	Directors() []string
}

// RPC is the channel between agents: operations this node serves, and
// calls to the DC or to one node.
type RPC interface {
	Handle(op string, h cluster.Handler)
	// RegisterError gives a sentinel error the handlers return a code,
	// so the caller's errors.Is finds it across the channel.
	RegisterError(code string, sentinel error)
	CallDC(ctx context.Context, op string, req, resp any) error
	CallNode(ctx context.Context, name, op string, req, resp any) error
}

// Cluster is every role at once: what New is given.
type Cluster interface {
	Leader
	Log
	Members
	RPC
}
