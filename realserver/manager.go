package realserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/spec"
)

const loopback = "lo"

// Manager places the VIPs on this node. Every VIP is on lo for as long as
// it is managed: that copy makes the node a real server. The DC also
// carries its VIPs on their interface, where they answer ARP, with a
// lifetime the kernel enforces (the lease): an agent that dies or hangs
// loses them there by the kernel alone, and stays a real server. The
// manager remembers which VIPs it manages in a state file, so that after a
// crash the restarted agent can take a VIP off the interface before it
// knows anything else: a restarted agent is never DC until proven.
type Manager struct {
	k         Kernel
	iface     string // default interface for VIPs that name none
	stateFile string
	lease     time.Duration
	logger    *slog.Logger
	connSync  bool // the node runs IPVS connection synchronisation: its sysctls are set

	mu      sync.Mutex
	managed map[netip.Addr]string // VIP → its interface
	held    map[netip.Addr]bool   // VIPs this node carries on their interface
	prev    map[string]string     // sysctl key → value before we changed it
	lapses  int                   // renewals that found the address gone
	left    []netip.Addr          // the VIPs the last run managed, as Start found them

	// answers gates what the kernel answers for a VIP on its interface
	// (answers.go); nil: the address lifetime alone. answerSet is the
	// managed set last installed; repairs counts the reinstalls. granted
	// and grantedUntil mirror the kernel's leases (the VIPs granted and
	// not ended since, their one deadline) for a repair to restore.
	answers          dataplane.VIPLease
	answerFor        time.Duration
	answerSet        []netip.Addr
	answersInstalled bool
	repairs          int
	granted          map[netip.Addr]bool
	grantedUntil     time.Time
}

// Config sets up a Manager.
type Config struct {
	// Interface is where a VIP goes when the spec names none.
	Interface string
	// StateFile lives in the agent's data dir.
	StateFile string
	// Lease is the lifetime a VIP gets on its interface, renewed by the
	// DC; whole seconds. Zero puts it there for good (tests only: the
	// agent always sets one).
	Lease time.Duration
	// Answers, when set, gates what the kernel answers for a VIP on its
	// interface by a lease of AnswerLease that it expires to the
	// millisecond (answers.go).
	Answers     dataplane.VIPLease
	AnswerLease time.Duration
	// ConnSync says the node runs IPVS connection synchronisation, whose
	// kernel settings it then makes (sysctl.go).
	ConnSync bool
	Logger   *slog.Logger
}

// New returns a Manager.
func New(k Kernel, cfg Config) *Manager {
	return &Manager{
		k: k, iface: cfg.Interface, stateFile: cfg.StateFile, lease: cfg.Lease, answers: cfg.Answers, answerFor: cfg.AnswerLease, connSync: cfg.ConnSync,
		logger:  cfg.Logger.With("component", "realserver"),
		managed: map[netip.Addr]string{},
		held:    map[netip.Addr]bool{},
		granted: map[netip.Addr]bool{},
		prev:    map[string]string{},
	}
}

type stateFileVIP struct {
	Address   netip.Addr `json:"address"`
	Interface string     `json:"interface"`
}

// Start sets the sysctls (ARP and IPVS) and takes every VIP the last run managed off
// its interface and onto lo. It runs before the node joins the cluster.
func (m *Manager) Start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, err := m.readState()
	if err != nil {
		return err
	}
	for _, v := range old {
		m.managed[v.Address] = v.Interface
		m.left = append(m.left, v.Address)
	}
	if err := m.applySysctls(); err != nil {
		return err
	}
	for vip, iface := range m.managed {
		if err := m.toLoopback(vip, iface); err != nil {
			return err
		}
		m.logger.Info("VIP left by the previous run put back on lo", "vip", vip, "interface", iface)
	}
	// Leases the last run granted end now: a restarted agent is never DC
	// until proven.
	managed := sortedAddrs(m.managed)
	if err := m.installAnswers(managed); err != nil {
		return err
	}
	return m.endAnswers(managed)
}

// LeftByLastRun lists the VIPs the previous run of the agent managed: Start
// took each off its interface, so the node has let go of any it held.
func (m *Manager) LeftByLastRun() []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.left)
}

func (m *Manager) ifaceOf(v spec.VIP) string {
	if v.Interface != "" {
		return v.Interface
	}
	return m.iface
}

// Apply places vips: each on lo, and on its interface too when hold says
// so (this node is the verified DC and may hold it, by a verification sent
// at verified; zero when hold is empty). VIPs that left the spec are
// removed from both. Apply is idempotent; it writes only what
// differs (a VIP already held keeps its lease until the next Renew).
func (m *Manager) Apply(vips []spec.VIP, hold map[netip.Addr]bool, verified time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[netip.Addr]string{}
	for _, v := range vips {
		iface := m.ifaceOf(v)
		if iface == "" {
			return fmt.Errorf("VIP %s names no interface and the agent has no --interface", v.Address)
		}
		want[v.Address] = iface
	}
	// This node stops answering for a VIP it lets go of before anything
	// else changes.
	var letGo []netip.Addr
	for _, vip := range sortedAddrs(m.held) {
		if w, ok := want[vip]; !ok || w != m.managed[vip] || !hold[vip] {
			letGo = append(letGo, vip)
		}
	}
	// A lease that cannot be ended (a damaged table) does not keep a VIP
	// on its interface: taking the address off silences it too.
	errs := []error{m.endAnswers(letGo)}
	// Gone from the spec, or moved to another interface: remove.
	for vip, iface := range m.managed {
		if w, ok := want[vip]; !ok || w != iface {
			errs = append(errs, m.remove(vip, iface))
			delete(m.managed, vip)
			delete(m.held, vip)
		}
	}
	newIface := false
	for vip, iface := range want {
		if _, ok := m.managed[vip]; !ok {
			newIface = newIface || !m.knowsIface(iface)
		}
		m.managed[vip] = iface
	}
	if err := m.writeState(); err != nil {
		errs = append(errs, err)
	}
	if newIface {
		errs = append(errs, m.applySysctls())
	}
	// Every VIP is in the lease table before it can go on an interface:
	// placed there, it is silent until granted.
	if err := m.installAnswers(sortedAddrs(want)); err != nil {
		return errors.Join(append(errs, err)...)
	}
	var granted []netip.Addr
	for _, vip := range sortedAddrs(want) {
		if hold[vip] {
			if err := m.toInterface(vip, want[vip]); err != nil {
				errs = append(errs, err)
			} else if !m.held[vip] {
				m.held[vip] = true
				granted = append(granted, vip)
				m.logger.Info("VIP on its interface: this node is DC", "vip", vip, "interface", want[vip], "lease", m.lease, "answer_lease", m.answerFor)
			}
			continue
		}
		if err := m.toLoopback(vip, want[vip]); err != nil {
			errs = append(errs, err)
		} else if m.held[vip] {
			delete(m.held, vip)
			m.logger.Info("VIP off its interface: this node is a real server", "vip", vip, "interface", want[vip])
		}
	}
	errs = append(errs, m.grantAnswers(granted, verified))
	return errors.Join(errs...)
}

// Renew renews the lease of every VIP this node holds on its interface,
// in place. A VIP whose lease had lapsed (the agent was starved past it)
// is added back and reported: it was gone from the interface for a while.
// The caller has just verified that this node may hold them, in a
// verification sent at verified: the answers' lease counts from then.
func (m *Manager) Renew(verified time.Time) (lapsed []netip.Addr, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lease == 0 {
		return nil, nil
	}
	var errs []error
	present := map[string][]netip.Prefix{}
	for _, vip := range sortedAddrs(m.held) {
		iface := m.managed[vip]
		if _, ok := present[iface]; !ok {
			addrs, err := m.k.Addrs(iface)
			if err != nil {
				errs = append(errs, fmt.Errorf("renew VIPs on %s: %w", iface, err))
				continue
			}
			present[iface] = addrs
		}
		if !slices.Contains(present[iface], hostPrefix(vip)) {
			lapsed = append(lapsed, vip)
			m.lapses++
			m.logger.Warn("VIP lease had lapsed: the address was gone from the interface and is put back", "vip", vip, "interface", iface, "lease", m.lease)
		}
		if err := m.k.AddrLease(iface, hostPrefix(vip), m.lease); err != nil {
			errs = append(errs, fmt.Errorf("renew the lease of VIP %s on %s: %w", vip, iface, err))
		}
	}
	errs = append(errs, m.grantAnswers(sortedAddrs(m.held), verified))
	return lapsed, errors.Join(errs...)
}

// Lapses counts the renewals that found a VIP's lease lapsed.
func (m *Manager) Lapses() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lapses
}

// Where reports, from the kernel, whether this node carries vip on its
// interface and on lo.
func (m *Manager) Where(vip netip.Addr) (iface string, onIface, onLo bool) {
	m.mu.Lock()
	iface = m.managed[vip]
	m.mu.Unlock()
	has := func(dev string) bool {
		if dev == "" {
			return false
		}
		addrs, err := m.k.Addrs(dev)
		return err == nil && slices.Contains(addrs, hostPrefix(vip))
	}
	return iface, has(iface), has(loopback)
}

// OnInterface lists the managed VIPs the kernel carries on their
// interface right now: on a node that is not DC, each is a fault to
// repair.
func (m *Manager) OnInterface() []netip.Addr {
	m.mu.Lock()
	managed := maps.Clone(m.managed)
	m.mu.Unlock()
	var out []netip.Addr
	for _, vip := range sortedAddrs(managed) {
		addrs, err := m.k.Addrs(managed[vip])
		if err == nil && slices.Contains(addrs, hostPrefix(vip)) {
			out = append(out, vip)
		}
	}
	return out
}

// HasInterface reports whether the kernel has the interface.
func (m *Manager) HasInterface(iface string) bool {
	_, err := m.k.Addrs(iface)
	return err == nil
}

func (m *Manager) knowsIface(iface string) bool {
	_, ok := m.prev["net/ipv4/conf/"+iface+"/arp_ignore"]
	return ok
}

// toInterface puts the VIP on the interface, with the lease, keeping it on
// lo: when the lease runs out without a renewal the node is a real server
// still. A VIP already held is left as it is; Renew extends its lease.
func (m *Manager) toInterface(vip netip.Addr, iface string) error {
	p := hostPrefix(vip)
	if err := m.k.AddrAdd(loopback, p); err != nil {
		return fmt.Errorf("add VIP %s to lo: %w", vip, err)
	}
	if m.held[vip] {
		return nil
	}
	var err error
	if m.lease > 0 {
		err = m.k.AddrLease(iface, p, m.lease)
	} else {
		err = m.k.AddrAdd(iface, p)
	}
	if err != nil {
		return fmt.Errorf("add VIP %s to %s: %w", vip, iface, err)
	}
	return nil
}

// toLoopback puts the VIP on lo before taking it off the interface: from
// that instant on this node stops answering ARP for it.
func (m *Manager) toLoopback(vip netip.Addr, iface string) error {
	p := hostPrefix(vip)
	if err := m.k.AddrAdd(loopback, p); err != nil {
		return fmt.Errorf("add VIP %s to lo: %w", vip, err)
	}
	if iface != "" {
		if err := m.k.AddrDel(iface, p); err != nil {
			return fmt.Errorf("remove VIP %s from %s: %w", vip, iface, err)
		}
	}
	return nil
}

func (m *Manager) remove(vip netip.Addr, iface string) error {
	p := hostPrefix(vip)
	var errs []error
	for _, dev := range []string{iface, loopback} {
		if dev == "" {
			continue
		}
		if err := m.k.AddrDel(dev, p); err != nil {
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", vip, dev, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) ifaces() []string {
	set := map[string]bool{}
	if m.iface != "" {
		set[m.iface] = true
	}
	for _, iface := range m.managed {
		set[iface] = true
	}
	out := make([]string, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	sort.Strings(out)
	return out
}

// Shutdown removes the VIPs from lo and the interface, then restores the
// sysctls. The order matters: with arp_ignore back at 0 and the VIP still
// on lo, this node would answer ARP for the VIP beside the DC.
func (m *Manager) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	errs := []error{m.endAnswers(sortedAddrs(m.managed))}
	for vip, iface := range m.managed {
		errs = append(errs, m.remove(vip, iface))
	}
	m.managed = map[netip.Addr]string{}
	m.held = map[netip.Addr]bool{}
	errs = append(errs, m.writeState())
	if m.answers != nil && m.answersInstalled {
		errs = append(errs, m.answers.Remove())
		m.answersInstalled = false
	}
	keys := make([]string, 0, len(m.prev))
	for k := range m.prev {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := m.k.SetSysctl(k, m.prev[k]); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) readState() ([]stateFileVIP, error) { return readStateFile(m.stateFile) }

func readStateFile(path string) ([]stateFileVIP, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read VIP state: %w", err)
	}
	return parseStateFile(b, path)
}

// parseStateFile reads the VIP state file's content.
func parseStateFile(b []byte, path string) ([]stateFileVIP, error) {
	var vips []stateFileVIP
	if err := json.Unmarshal(b, &vips); err != nil {
		return nil, fmt.Errorf("VIP state file %s is corrupt (remove it after checking `ip addr`): %w", path, err)
	}
	for _, v := range vips {
		if !v.Address.IsValid() {
			return nil, fmt.Errorf("VIP state file %s holds an invalid address", path)
		}
	}
	return vips, nil
}

// Release takes every VIP the state file says an agent managed off its
// interface, leaving the lo copies (and the sysctls) as they are: what a
// supervisor runs after the agent exited, however it exited, so a dead
// agent's node stops answering ARP for them at once instead of when the
// lease ends. It returns the VIPs, for their IPVS services to go too.
func Release(k Kernel, stateFile string) ([]netip.Addr, error) {
	vips, err := readStateFile(stateFile)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	var errs []error
	for _, v := range vips {
		out = append(out, v.Address)
		if v.Interface == "" {
			continue
		}
		if err := k.AddrDel(v.Interface, hostPrefix(v.Address)); err != nil {
			errs = append(errs, fmt.Errorf("remove VIP %s from %s: %w", v.Address, v.Interface, err))
		}
	}
	return out, errors.Join(errs...)
}

func (m *Manager) writeState() error {
	vips := make([]stateFileVIP, 0, len(m.managed))
	for _, a := range sortedAddrs(m.managed) {
		vips = append(vips, stateFileVIP{Address: a, Interface: m.managed[a]})
	}
	b, _ := json.Marshal(vips)
	tmp := m.stateFile + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write VIP state: %w", err)
	}
	if err := os.Rename(tmp, m.stateFile); err != nil {
		return fmt.Errorf("write VIP state: %w", err)
	}
	return nil
}

// DefaultInterface is where a VIP that names no interface goes.
func (m *Manager) DefaultInterface() string { return m.iface }

// ManagedVIPs lists the VIPs this node currently manages.
func (m *Manager) ManagedVIPs() []netip.Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	return sortedAddrs(m.managed)
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}
