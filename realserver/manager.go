package realserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"

	"github.com/raftlb/raftlb/fsm"
)

const loopback = "lo"

// Manager places the VIPs on this node. It remembers which VIPs it
// manages in a state file, so that after a crash the restarted agent can
// take a VIP off the interface before it knows anything else: a restarted
// agent is never DC until proven.
type Manager struct {
	k         Kernel
	iface     string // default interface for VIPs that name none
	stateFile string
	logger    *slog.Logger

	mu      sync.Mutex
	managed map[netip.Addr]string // VIP → its interface
	prev    map[string]string     // sysctl key → value before we changed it
	holding bool
}

// New returns a Manager. iface is the interface a VIP goes on when the spec
// names none; stateFile lives in the agent's data dir.
func New(k Kernel, iface, stateFile string, logger *slog.Logger) *Manager {
	return &Manager{
		k: k, iface: iface, stateFile: stateFile,
		logger:  logger.With("component", "realserver"),
		managed: map[netip.Addr]string{},
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
	return nil
}

func (m *Manager) ifaceOf(v fsm.VIP) string {
	if v.Interface != "" {
		return v.Interface
	}
	return m.iface
}

// Apply places vips: on their interface when holding (this node is the
// verified DC), on lo otherwise. VIPs that left the spec are removed from
// both. Apply is idempotent; it writes only what differs.
func (m *Manager) Apply(vips []fsm.VIP, holding bool) error {
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
	var errs []error
	// Gone from the spec, or moved to another interface: remove.
	for vip, iface := range m.managed {
		if w, ok := want[vip]; !ok || w != iface {
			errs = append(errs, m.remove(vip, iface))
			delete(m.managed, vip)
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
	for _, vip := range sortedAddrs(want) {
		if holding {
			errs = append(errs, m.toInterface(vip, want[vip]))
		} else {
			errs = append(errs, m.toLoopback(vip, want[vip]))
		}
	}
	if holding != m.holding {
		m.holding = holding
		if holding {
			m.logger.Info("VIPs moved to the interface: this node is DC", "vips", len(want))
		} else {
			m.logger.Info("VIPs on lo: this node is a real server", "vips", len(want))
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) knowsIface(iface string) bool {
	_, ok := m.prev["net/ipv4/conf/"+iface+"/arp_ignore"]
	return ok
}

// toInterface adds the VIP on the interface before taking it off lo, so the
// node never lacks the address it must accept packets for.
func (m *Manager) toInterface(vip netip.Addr, iface string) error {
	p := hostPrefix(vip)
	if err := m.k.AddrAdd(iface, p); err != nil {
		return fmt.Errorf("add VIP %s to %s: %w", vip, iface, err)
	}
	if err := m.k.AddrDel(loopback, p); err != nil {
		return fmt.Errorf("remove VIP %s from lo: %w", vip, err)
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

// applySysctls sets the table, remembering each previous value once so
// Shutdown restores what the operator had.
func (m *Manager) applySysctls() error {
	for _, s := range nodeSysctls(m.ifaces()) {
		cur, err := m.k.Sysctl(s.key)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.key, err)
		}
		if _, seen := m.prev[s.key]; !seen {
			m.prev[s.key] = cur
		}
		if cur == s.value {
			continue
		}
		if err := m.k.SetSysctl(s.key, s.value); err != nil {
			return fmt.Errorf("set %s=%s (%s): %w", s.key, s.value, s.why, err)
		}
		m.logger.Info("sysctl set", "key", s.key, "value", s.value, "was", cur, "why", s.why)
	}
	return nil
}

// Shutdown removes the VIPs from lo and the interface, then restores the
// sysctls. The order matters: with arp_ignore back at 0 and the VIP still
// on lo, this node would answer ARP for the VIP beside the DC.
func (m *Manager) Shutdown() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for vip, iface := range m.managed {
		errs = append(errs, m.remove(vip, iface))
	}
	m.managed = map[netip.Addr]string{}
	errs = append(errs, m.writeState())
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

func (m *Manager) readState() ([]stateFileVIP, error) {
	b, err := os.ReadFile(m.stateFile)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read VIP state: %w", err)
	}
	var vips []stateFileVIP
	if err := json.Unmarshal(b, &vips); err != nil {
		return nil, fmt.Errorf("VIP state file %s is corrupt (remove it after checking `ip addr`): %w", m.stateFile, err)
	}
	for _, v := range vips {
		if !v.Address.IsValid() {
			return nil, fmt.Errorf("VIP state file %s holds an invalid address", m.stateFile)
		}
	}
	return vips, nil
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
