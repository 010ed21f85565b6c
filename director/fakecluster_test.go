package director

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/spec"
)

// The nodes and the VIP of the director's tests. Every address a health
// check may probe is on loopback (the sandbox), and the health checks
// dial through testkit's dialer besides.
var (
	vip = netip.MustParseAddr("172.95.69.100") // never dialed: a VIP lives in the fake kernel only
	m30 = netip.MustParseAddr("127.0.0.30")
	m40 = netip.MustParseAddr("127.0.0.40")
	m50 = netip.MustParseAddr("127.0.0.50")
)

// fakeCluster drives the director the way cluster.Node would.
type fakeCluster struct {
	t       *testing.T
	fsm     *fsm.FSM
	index   uint64
	leaders chan cluster.LeaderEvent
	members chan struct{}

	mu          sync.Mutex
	online      map[string]bool
	stopping    map[string]bool
	verifyErr   error
	barrierErr  error
	transferErr error
	verified    int
	// onVerify runs inside each verification: the answers' way back.
	onVerify func()
	// contact, contactOK: what ContactBound answers.
	contact    time.Time
	contactOK  bool
	reconciled int      // ReconcileMembers calls
	transfers  []string // TransferLeadership reasons
	moves      []string // MoveDC targets
	hooks      []func(bool)
	memberSubs []chan struct{}
	handlers   map[string]cluster.Handler
	commitErr  error
	leader     string
	noDirect   string          // why m30 cannot direct
	cannot     map[string]bool // other nodes that cannot direct
}

func newFakeCluster(t *testing.T) *fakeCluster {
	c := &fakeCluster{
		t: t, fsm: fsm.New(),
		leaders: make(chan cluster.LeaderEvent, 1),
		online:  map[string]bool{"m30": true, "m40": true, "m50": true},
	}
	for name, a := range map[string]netip.Addr{"m30": m30, "m40": m40, "m50": m50} {
		c.apply(fsm.CmdRegisterNode, fsm.Node{
			Name: name, Address: a,
			RaftAddr: netip.AddrPortFrom(a, 7947), GossipAddr: netip.AddrPortFrom(a, 7946),
		})
	}
	return c
}

func (c *fakeCluster) apply(t fsm.CommandType, payload any) {
	if _, err := c.commit(t, payload); err != nil {
		c.t.Fatal(err)
	}
}

func (c *fakeCluster) commit(t fsm.CommandType, payload any) (uint64, error) {
	b, err := fsm.EncodeCommand(t, payload)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.index++
	index := c.index
	c.mu.Unlock()
	if r, ok := c.fsm.Apply(&raft.Log{Index: index, Data: b}).(*fsm.Result); ok && r.Err != nil {
		return 0, r.Err
	}
	return index, nil
}

func (c *fakeCluster) CanDirect() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.noDirect == "", c.noDirect
}

func (c *fakeCluster) SetCannotDirect(reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noDirect = reason
}

// Directors are the online nodes, this one unless it cannot direct.
func (c *fakeCluster) Directors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for n, up := range c.online {
		if up && (n != "m30" || c.noDirect == "") && !c.cannot[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (c *fakeCluster) TransferLeadershipTo(to, reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transfers = append(c.transfers, to+": "+reason)
	return c.transferErr
}

// MoveDC records a graceful move; it fails with transferErr.
func (c *fakeCluster) MoveDC(_ context.Context, to string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.moves = append(c.moves, to)
	return "m40", c.transferErr
}

func (c *fakeCluster) movesAsked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.moves)
}

func (c *fakeCluster) LiveMembers() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for n, up := range c.online {
		if up {
			out[n] = !c.cannot[n]
		}
	}
	return out
}

// CallNode calls this node's own handler for every node: the director's
// tests have one kernel.
func (c *fakeCluster) CallNode(ctx context.Context, _ string, op string, req, resp any) error {
	return c.CallDC(ctx, op, req, resp)
}

func (c *fakeCluster) Leader() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

func (c *fakeCluster) setLeader(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leader = name
}

// Name is the DC's: the director's tests run on m30.
func (c *fakeCluster) Name() string { return "m30" }

// Commit commits like the DC's Raft, or fails as commitErr says.
func (c *fakeCluster) Commit(t fsm.CommandType, payload any) (uint64, error) {
	c.mu.Lock()
	err := c.commitErr
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return c.commit(t, payload)
}

func (c *fakeCluster) Handle(op string, h cluster.Handler) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.handlers == nil {
		c.handlers = map[string]cluster.Handler{}
	}
	c.handlers[op] = h
}

// CallDC calls this node's own handler, as if it were the DC's.
func (c *fakeCluster) CallDC(ctx context.Context, op string, req, resp any) error {
	c.mu.Lock()
	h := c.handlers[op]
	c.mu.Unlock()
	if h == nil {
		return fmt.Errorf("unknown operation %q", op)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	out, err := h(ctx, c.Name(), body)
	if err != nil {
		return err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, resp)
}

func (c *fakeCluster) setSpec(s spec.Spec) { c.apply(fsm.CmdSetSpec, fsm.SetSpec{Spec: s}) }

func (c *fakeCluster) Leadership() (<-chan cluster.LeaderEvent, func()) { return c.leaders, func() {} }
func (c *fakeCluster) FSM() *fsm.FSM                                    { return c.fsm }

func (c *fakeCluster) SubscribeMembership() (<-chan struct{}, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan struct{}, 1)
	c.memberSubs = append(c.memberSubs, ch)
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.memberSubs = slices.DeleteFunc(c.memberSubs, func(x chan struct{}) bool { return x == ch })
	}
}

func (c *fakeCluster) Barrier(time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.barrierErr
}

func (c *fakeCluster) VerifyLeader(uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verified++
	if c.onVerify != nil {
		c.onVerify()
	}
	return c.verifyErr
}

func (c *fakeCluster) setVerifyErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verifyErr = err
}

func (c *fakeCluster) ReconcileMembers(context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reconciled++
}

func (c *fakeCluster) reconciledMembers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reconciled
}

func (c *fakeCluster) TransferLeadership(reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.transfers = append(c.transfers, reason)
	return c.transferErr
}

func (c *fakeCluster) transferReasons() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.transfers)
}

// ContactBound answers what the test set (contact, contactOK).
func (c *fakeCluster) ContactBound(context.Context, string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.contact, c.contactOK
}

// RegisterError: errors cross no channel in the fake.
func (c *fakeCluster) RegisterError(string, error) {}

func (c *fakeCluster) OnHandOver(fn func(bool)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hooks = append(c.hooks, fn)
}

// setHandingOver does what the real node does around a leadership
// transfer: the hooks, with true before it and false after one that
// failed.
func (c *fakeCluster) setHandingOver(on bool) {
	c.mu.Lock()
	hooks := slices.Clone(c.hooks)
	c.mu.Unlock()
	for _, fn := range hooks {
		fn(on)
	}
}

func (c *fakeCluster) OnlineNodes() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]bool{}
	for k, v := range c.online {
		out[k] = v
	}
	return out
}

func (c *fakeCluster) StoppingNodes() map[string]bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.stopping)
}

// setStopping says in "gossip" that name's agent is stopping (Drain).
func (c *fakeCluster) setStopping(name string) {
	c.mu.Lock()
	if c.stopping == nil {
		c.stopping = map[string]bool{}
	}
	c.stopping[name] = true
	c.mu.Unlock()
	c.notifyMembers()
}

// setOnline changes a node's gossip state and tells the subscribers.
func (c *fakeCluster) setOnline(name string, up bool) {
	c.mu.Lock()
	c.online[name] = up
	c.mu.Unlock()
	c.notifyMembers()
}

func (c *fakeCluster) notifyMembers() {
	c.mu.Lock()
	subs := slices.Clone(c.memberSubs)
	c.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func squid(scheduler string) spec.Spec {
	return spec.Spec{
		VIPs: []spec.VIP{{Address: vip, Interface: "eth0"}},
		Services: []spec.Service{{
			Name: "squid", VIP: vip, Port: 3128, Protocol: "tcp", Scheduler: scheduler, Forwarding: "route",
			Persistence: spec.Persistence{Timeout: 20 * time.Second},
			RealServers: spec.RealServers{AllNodes: true, NodePort: 3128, NodeWeight: 1},
			Fallback:    &spec.RealServer{Address: netip.MustParseAddr("127.0.0.1"), Port: 3128, Weight: 1},
		}},
		Policy: spec.Policy{NoQuorum: "stop"},
	}
}

// world is a director on the fakes: cluster, kernel addresses, IPVS, ARP.
type world struct {
	t    *testing.T
	c    *fakeCluster
	k    *realserver.Fake
	rs   *realserver.Manager
	ipvs *dataplane.FakeIPVS
	arp  *dataplane.FakeARP
	// answers gates what the fake kernel answers for the VIPs, as the
	// agent's nftables lease does.
	answers *dataplane.FakeLease
	d       *Director
	logs    *testkit.LogBuffer
	bus     *events.Bus // what the director published
}

// events lists the types of the events published so far, in order, with
// the detail a test checks (VIP, server, resource or fence target).
func (w *world) events() []string {
	var out []string
	for _, e := range w.bus.Recent() {
		detail := e.VIP + e.Server + e.Resource + e.Target
		out = append(out, strings.TrimSpace(e.Type+" "+detail))
	}
	return out
}

// sawEvents reports whether want occur in the events, in this order (others
// may come between).
func (w *world) sawEvents(want ...string) bool {
	got := w.events()
	i := 0
	for _, e := range got {
		if i < len(want) && e == want[i] {
			i++
		}
	}
	return i == len(want)
}

// testLease is the VIP lease in tests: long, so that a test calling steps
// one by one never sees its VIP expire unless it waits for that.
var testLease = quorum.Lease{Duration: 10 * time.Second}

// testConfig is the director's configuration in tests: fast retries and
// bursts, no timers that fire on their own (tests send those events), the
// health checks confined to loopback.
func testConfig(t *testing.T, logs *testkit.LogBuffer) Config {
	return Config{
		GARPSpacing: time.Millisecond, GARPRefresh: -1, ReconcileInterval: time.Hour, MembershipInterval: time.Hour,
		HandOverGrace: 20 * time.Millisecond, Retry: time.Millisecond, GiveUpAfter: 2, Lease: testLease,
		HealthDial: testkit.DialContext(t), Logger: logs.Logger(),
	}
}

func newWorld(t *testing.T, mod func(*Config)) *world {
	w := &world{t: t, c: newFakeCluster(t), k: realserver.NewFake("eth0"), ipvs: dataplane.NewFakeIPVS(), arp: &dataplane.FakeARP{}, logs: &testkit.LogBuffer{}}
	cfg := testConfig(t, w.logs)
	w.bus = events.NewBus("m30", 1000)
	cfg.Events = w.bus
	if mod != nil {
		mod(&cfg)
	}
	// The kernel's lease is the director's, as in the agent.
	w.answers = dataplane.NewFakeLease(nil)
	w.rs = realserver.New(w.k, realserver.Config{Interface: "eth0", StateFile: t.TempDir() + "/vips.json", Lease: cfg.Lease.Duration,
		Answers: w.answers, AnswerLease: cfg.Lease.Duration, Logger: testkit.Discard()})
	if err := w.rs.Start(); err != nil {
		t.Fatal(err)
	}
	w.c.setSpec(squid("rr"))
	w.d = New(w.c, &Dataplane{RS: w.rs, IPVS: w.ipvs, ARP: w.arp}, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("director logs:\n%s", w.logs.String())
		}
	})
	return w
}

// run starts the director's Run loop; it stops when the test ends.
func (w *world) run() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.d.Run(ctx)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	w.t.Cleanup(stop)
	return stop
}

// has reports whether the fake kernel carries the VIP on dev.
func (w *world) has(dev string) bool {
	addrs, _ := w.k.Addrs(dev)
	return slices.Contains(addrs, netip.PrefixFrom(vip, 32))
}

func (w *world) table() []dataplane.Service {
	s, _ := w.ipvs.Services()
	return s
}

// dests is the real servers of the first service, by address.
func (w *world) dests() map[string]int {
	tab := w.table()
	if len(tab) == 0 {
		return nil
	}
	return destsOf(tab[0])
}

func destsOf(s dataplane.Service) map[string]int {
	out := map[string]int{}
	for _, d := range s.Dests {
		out[d.AddrPort().String()] = d.Weight
	}
	return out
}
