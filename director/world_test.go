package director

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
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
	// sync is the kernel's IPVS sync daemons, seen through syncWatch.
	sync *dataplane.FakeSync
	d    *Director
	logs *testkit.LogBuffer
	bus  *events.Bus // what the director published
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
	w.sync = &dataplane.FakeSync{}
	sync := &ConnSync{Kernel: &syncWatch{FakeSync: w.sync, w: w}, Interface: "eth0", ID: 7}
	w.d = New(w.c, &Dataplane{RS: w.rs, IPVS: w.ipvs, ARP: w.arp, Sync: sync}, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("director logs:\n%s", w.logs.String())
		}
	})
	return w
}

// syncWatch records, for each sync daemon started, whether the VIP was on
// its interface at that moment: a master must be running (and the
// backup, whose kernel does not balance, gone) before the VIP goes there.
type syncWatch struct {
	*dataplane.FakeSync
	w       *world
	mu      sync.Mutex
	started []string
}

func (s *syncWatch) StartSyncDaemon(d dataplane.SyncDaemon) error {
	s.mu.Lock()
	s.started = append(s.started, fmt.Sprintf("%s (VIP on eth0: %v)", d.Role, s.w.has("eth0")))
	s.mu.Unlock()
	return s.FakeSync.StartSyncDaemon(d)
}

func (s *syncWatch) Started() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.started)
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
