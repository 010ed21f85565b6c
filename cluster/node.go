package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/raftlb/raftlb/fsm"
)

// Errors a caller can test for with errors.Is.
var (
	ErrNoDC     = errors.New("no DC is elected (the cluster has no quorum or is still electing)")
	ErrConflict = errors.New("the spec changed since it was read")
	ErrShutdown = errors.New("the node is shutting down")
	// ErrGossipKey: the peers could not read our gossip, or we theirs.
	ErrGossipKey = errors.New("the gossip key differs from the cluster's")
)

// raftIOTimeout bounds one Raft RPC to a peer (a heartbeat, an append, a
// vote): on a LAN it answers within milliseconds.
const raftIOTimeout = 2 * time.Second

// Node is one cluster member: gossip, Raft and the replicated FSM.
type Node struct {
	cfg    Config
	logger *slog.Logger
	fsm    *fsm.FSM

	gossip *gossipDelegate
	ml     *memberlist.Memberlist
	mux    *muxLayer
	trans  *raft.NetworkTransport
	raft   *raft.Raft
	store  *raftboltdb.BoltStore

	// hadState records whether Raft state existed at start: such a node
	// never bootstraps again.
	hadState bool
	// handlers serve the RPC operations other packages registered.
	keyring    *memberlist.Keyring // nil when insecure
	creds      credentials         // the keys and certificate in use (reload.go)
	serials    seenSerials         // certificate serials each peer used (identity.go)
	handlersMu sync.Mutex
	handlers   map[string]Handler
	// errCodes maps the sentinel errors handlers return to codes on the
	// RPC channel and back (rpcerror.go).
	errCodes  *errorCodes
	checkSpec SpecCheck
	// contact is this node's last contact with each leader it followed
	// (contact.go).
	contact *contactTracker
	// onHandOver is told of each hand-over on purpose (the director's
	// term acts on it): the cluster keeps no state of its own about it.
	hooksMu    sync.Mutex
	onHandOver []func(begun bool)
	// caughtUp turns true once this node has applied its whole local log
	// since start; until then status calls its data stale.
	caughtUp atomic.Bool

	// rejected remembers why the membership step last refused each node.
	rejected refusals

	notifyCh   chan bool
	leaders    *leadership
	membership notifier
	// peersDirty asks memberDuties to save the peers file now rather than
	// at its next tick, so a node killed right after a join still finds
	// its cluster when it restarts.
	peersDirty chan struct{}

	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start opens the node's stores, starts Raft and gossip and the background
// loops (leadership, bootstrap, membership reconciliation). The node is
// usable when Start returns; joining a cluster is a separate step.
func Start(cfg Config, f *fsm.FSM) (*Node, error) {
	if cfg.MaxVoters == 0 {
		cfg.MaxVoters = DefaultMaxVoters
	}
	if cfg.Timing == (Timing{}) {
		cfg.Timing = DefaultTiming()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:        cfg,
		logger:     cfg.Logger.With("component", "cluster", "node", cfg.Name),
		fsm:        f,
		rejected:   refusals{why: map[string]string{}},
		handlers:   map[string]Handler{},
		contact:    newContactTracker(),
		errCodes:   newErrorCodes(),
		peersDirty: make(chan struct{}, 1),
		notifyCh:   make(chan bool, 16),
		leaders:    newLeadership(),
		ctx:        ctx,
		cancel:     cancel,
	}
	n.handlers[opLastContact] = n.serveLastContact
	n.gossip = &gossipDelegate{wake: n.wake, departed: map[string]bool{}, live: map[string]member{}, left: map[string]bool{}, logger: n.logger}
	if cfg.Insecure {
		n.logger.Warn("INSECURE MODE: gossip is not encrypted and Raft runs without TLS; anyone who can reach the ports can join and change the cluster. Use only for a local trial.")
	}
	if err := n.startRaft(); err != nil {
		n.closeAll()
		return nil, err
	}
	n.gossip.meta = nodeMeta{
		Version:   metaVersion,
		RaftAddr:  n.raftAddr(),
		Expect:    cfg.BootstrapExpect,
		HasState:  n.hadState,
		Dataplane: cfg.Dataplane,
		Witness:   cfg.Witness,
		Schema:    n.fsm.Schema(),
	}
	ml, err := n.newMemberlist()
	if err != nil {
		n.closeAll()
		return nil, err
	}
	n.ml = ml
	n.cfg.GossipPort = int(ml.LocalNode().Port) // resolves port 0
	n.logger.Info("node started", "raft", n.raftAddr(), "gossip", n.gossipAddr(),
		"existing_state", n.hadState, "bootstrap_expect", cfg.BootstrapExpect)

	n.goLoop(n.watchLeadership)
	n.goLoop(n.trackContact)
	n.goLoop(n.watchLeader)
	n.goLoop(n.keepSpares)
	n.goLoop(n.memberDuties)
	if cfg.BootstrapExpect > 0 && !n.hadState {
		n.goLoop(n.bootstrapLoop)
	}
	if peers := n.loadPeers(); len(peers) > 0 {
		n.goLoop(func(ctx context.Context) { n.rejoin(ctx, peers) })
	}
	return n, nil
}

func (n *Node) goLoop(f func(context.Context)) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f(n.ctx)
	}()
}

func (n *Node) raftAddr() string {
	return netip.AddrPortFrom(n.cfg.BindAddr, uint16(n.cfg.RaftPort)).String()
}

func (n *Node) startRaft() error {
	dir := filepath.Join(n.cfg.DataDir, "raft")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	store, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(dir, "raft.db"),
		// bbolt waits forever for its file lock; a second agent on the same
		// data dir should fail fast instead.
		BoltOptions: &bbolt.Options{Timeout: time.Second},
	})
	if err != nil {
		return fmt.Errorf("open raft store in %s (is another agent using this data dir?): %w", dir, err)
	}
	n.store = store
	logs, err := raft.NewLogCache(512, store)
	if err != nil {
		return fmt.Errorf("raft log cache: %w", err)
	}
	hlog := newHCLog(n.logger.With("subsystem", "raft"), "raft")
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, hlog)
	if err != nil {
		return fmt.Errorf("raft snapshot store: %w", err)
	}
	n.hadState, err = raft.HasExistingState(logs, store, snaps)
	if err != nil {
		return fmt.Errorf("read raft state: %w", err)
	}

	bind := netip.AddrPortFrom(n.cfg.BindAddr, uint16(n.cfg.RaftPort))
	mux, err := newMuxLayer(bind, n.cfg.TLS, n.handleRPC, n.checkPeer, n.checkRaftHeader, n.cfg.Filter, n.logger.With("subsystem", "transport"))
	if err != nil {
		return err
	}
	n.mux = mux
	if conf := n.cfg.TLS; conf != nil && len(conf.Certificates) > 0 && conf.Certificates[0].Leaf != nil {
		n.creds.setCert(conf.Certificates[0].Leaf)
	}
	// Port 0 (tests) is resolved now so peers learn the real port.
	if n.cfg.RaftPort == 0 {
		n.cfg.RaftPort = mux.Addr().(*net.TCPAddr).Port
	}
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Logger:  hlog,
		Stream:  mux,
		MaxPool: 3,
		Timeout: raftIOTimeout,
		// No pipelined replication: its two goroutines can deadlock when a
		// follower's answer ends replication (seen here: a DC handing over
		// hung in raft.Shutdown; grafana/pyroscope#5518 describes the same
		// stall). A handful of voters on a LAN with a tiny log gains
		// nothing from pipelining.
		MaxRPCsInFlight: 1,
	})

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(n.cfg.Name)
	rc.Logger = hlog
	rc.NotifyCh = n.notifyCh
	t := n.cfg.Timing
	// Raft's own timers are the fallback of the failure detector
	// (cluster/detect.go), which shortens them to the configured timeouts
	// when it looks for a silent leader.
	rc.HeartbeatTimeout = raftFallback * t.RaftHeartbeatTimeout
	rc.ElectionTimeout = raftFallback * t.RaftElectionTimeout
	rc.LeaderLeaseTimeout = t.RaftLeaderLease
	rc.CommitTimeout = t.RaftCommitTimeout
	if n.cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = n.cfg.SnapshotThreshold
	}
	if n.cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = n.cfg.SnapshotInterval
	}
	if n.cfg.TrailingLogs > 0 {
		rc.TrailingLogs = n.cfg.TrailingLogs
	}
	r, err := raft.NewRaft(rc, n.fsm, logs, store, snaps, n.trans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	n.raft = r
	n.mux.start()
	return nil
}

// HandOver transfers DC duties to another voter if this node leads, so
// the VIP moves without waiting for an election. It is the first step of a
// graceful stop.
func (n *Node) HandOver() {
	if n.raft.State() != raft.Leader || n.otherVoters() == 0 {
		return
	}
	n.transfer()
}

// transfer hands leadership to another voter. The hooks are told first
// (the director stops balancing before the transfer begins, and keeps its
// VIPs after losing leadership until it has seen the successor announce
// them), and again if the transfer failed.
func (n *Node) transfer() bool {
	// To the spec's preferred DC when it can take the role, else to
	// whichever voter Raft picks.
	can := slices.DeleteFunc(n.Directors(), func(d string) bool { return d == n.cfg.Name })
	if p := n.fsm.Spec().Policy.PreferredDC; p != "" && slices.Contains(can, p) {
		if s, ok := configuration(n.raft)[p]; ok {
			return n.handOverTo(s.ID, s.Address)
		}
	}
	return n.handOverTo("", "")
}

// handOverTo is transfer to the voter id at addr (any voter when id is
// empty).
func (n *Node) handOverTo(id raft.ServerID, addr raft.ServerAddress) bool {
	term := n.raft.CurrentTerm()
	n.handOverHooks(true)
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		f = n.raft.LeadershipTransferToServer(id, addr)
	}
	if err := f.Error(); err != nil {
		if n.raft.State() != raft.Leader && n.raft.CurrentTerm() > term {
			// The transfer timed out, but a successor was elected in a
			// later term all the same (a slow election): the hand-over
			// happened.
			n.logger.Info("leadership transfer reported an error, but another node leads now", "err", err)
			return true
		}
		// Still DC, or stepped down without a successor (quorum lost):
		// no hand-over; whatever the director held it gives up or keeps
		// as a DC without one would.
		n.handOverHooks(false)
		n.logger.Warn("leadership transfer failed", "err", err)
		return false
	}
	n.logger.Info("handed DC duties to another node")
	return true
}

// TransferLeadership gives the DC role to another voter because this node
// cannot carry out its duties; reason is logged. Unlike a hand-over it
// keeps nothing for a grace: the director has nothing placed.
func (n *Node) TransferLeadership(reason string) error {
	if n.raft.State() != raft.Leader {
		return nil
	}
	if n.otherVoters() == 0 {
		return errors.New("no other voter to take over")
	}
	n.logger.Warn("transferring leadership", "reason", reason)
	if err := n.raft.LeadershipTransfer().Error(); err != nil {
		return fmt.Errorf("leadership transfer: %w", err)
	}
	return nil
}

// OnHandOver registers fn, called with true just before this node hands
// its DC duties over on purpose, and with false when such a hand-over
// failed and the node is still DC. fn runs on the caller's goroutine and
// must not block for long.
func (n *Node) OnHandOver(fn func(begun bool)) {
	n.hooksMu.Lock()
	defer n.hooksMu.Unlock()
	n.onHandOver = append(n.onHandOver, fn)
}

func (n *Node) handOverHooks(begun bool) {
	n.hooksMu.Lock()
	hooks := slices.Clone(n.onHandOver)
	n.hooksMu.Unlock()
	for _, fn := range hooks {
		fn(begun)
	}
}

// LeaveGossip announces that this node is going away, so the DC stops
// sending it traffic at once instead of waiting for failure detection. The
// node stays in the Raft configuration (shown offline); only Leave removes
// it for good.
func (n *Node) LeaveGossip() {
	if err := n.ml.Leave(gossipLeaveTimeout); err != nil {
		n.logger.Warn("gossip leave did not complete", "err", err)
	}
}

// Shutdown stops the node without leaving the cluster: a DC first hands
// its duties over. Peers keep it configured, shown offline, as Pacemaker
// keeps a stopped node. Use Leave to remove it.
func (n *Node) Shutdown() error {
	var err error
	n.stopOnce.Do(func() {
		if n.raft != nil {
			n.HandOver()
		}
		err = n.closeAll()
	})
	return err
}

// Abort stops the node at once, without handing DC duties over or leaving
// gossip: what its peers see when the machine dies. In-process tests crash
// nodes with it; the agent never calls it.
func (n *Node) Abort() error {
	var err error
	n.stopOnce.Do(func() { err = n.closeAll() })
	return err
}

// closeAll stops everything in the reverse order of Start: loops, gossip,
// Raft, transport, store.
func (n *Node) closeAll() error {
	n.cancel()
	n.wg.Wait()
	var errs []error
	if n.ml != nil {
		if err := n.ml.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("stop gossip: %w", err))
		}
	}
	if n.raft != nil {
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, fmt.Errorf("stop raft: %w", err))
		}
	}
	if n.trans != nil {
		_ = n.trans.Close()
	}
	if n.mux != nil {
		_ = n.mux.Close()
		n.mux.Wait()
	}
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close raft store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// wake is called on every gossip membership change: it tells membership
// subscribers (the DC's membership step among them).
func (n *Node) wake() {
	n.membership.notify()
	select {
	case n.peersDirty <- struct{}{}:
	default:
	}
}

// Term is this node's current Raft term.
func (n *Node) Term() uint64 { return n.raft.CurrentTerm() }

// Leader is the node this one knows as leader, "" when none is known
// (an election is under way, or this node is cut off).
func (n *Node) Leader() string {
	_, id := n.raft.LeaderWithID()
	return string(id)
}

// IsLeader reports whether this node currently believes it is the DC.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// Name is this node's name.
func (n *Node) Name() string { return n.cfg.Name }

// RaftAddr is the address peers dial for Raft and RPC.
func (n *Node) RaftAddr() string { return n.raftAddr() }

// GossipAddr is the address peers join.
func (n *Node) GossipAddr() string { return n.gossipAddr() }

// FSM gives read access to the replicated state.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// VerifyLeader confirms, by a round of contact with a quorum, that this
// node is still leader in term. The director calls it right before any
// gratuitous ARP or IPVS write (invariant 2 of ARCHITECTURE.md).
func (n *Node) VerifyLeader(term uint64) error {
	// raft answers a verification only from its leader loop: one queued
	// as raft shuts down is never answered (its future has no shutdown
	// channel), and the director would wait for ever. A verification
	// takes one heartbeat round; a leader without quorum contact steps
	// down within its lease and answers then.
	f := n.raft.VerifyLeader()
	answer := make(chan error, 1)
	go func() { answer <- f.Error() }()
	limit := time.NewTimer(4 * n.cfg.Timing.RaftHeartbeatTimeout)
	defer limit.Stop()
	var err error
	select {
	case err = <-answer:
	case <-n.ctx.Done():
		err = ErrShutdown
	case <-limit.C:
		err = fmt.Errorf("no answer within %s", 4*n.cfg.Timing.RaftHeartbeatTimeout)
	}
	if err != nil {
		return fmt.Errorf("verify leadership: %w", err)
	}
	if cur := n.raft.CurrentTerm(); cur != term {
		return fmt.Errorf("verify leadership: term moved from %d to %d", term, cur)
	}
	return nil
}

func (n *Node) otherVoters() int {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	c := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter && s.ID != raft.ServerID(n.cfg.Name) {
			c++
		}
	}
	return c
}
