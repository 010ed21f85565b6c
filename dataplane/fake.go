package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// FakeIPVS is an in-memory IPVS table that records every write, for tests.
// It behaves like the kernel where that matters: adding a service or real
// server twice is an error, and so is deleting one that is not there.
type FakeIPVS struct {
	mu       sync.Mutex
	services map[ServiceKey]*Service
	// Writes lists every write, e.g. "add-dest 10.0.0.1:80/tcp -> 10.0.0.2:80".
	Writes   []string
	observe  func(write string)
	detached bool
}

// Observe calls fn with every write as it is made, with the fake's lock
// held: fn must not call back into the fake.
func (f *FakeIPVS) Observe(fn func(write string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observe = fn
}

// PowerOff forgets the table, as a machine that lost power does.
func (f *FakeIPVS) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.services = map[ServiceKey]*Service{}
}

// Detach makes every later write a no-op, as when the agent that would
// make them has died (kill -9) while the machine runs on: the table stays
// as it was. Attach undoes it.
func (f *FakeIPVS) Detach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
}

// Attach undoes Detach.
func (f *FakeIPVS) Attach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = false
}

// NewFakeIPVS returns an empty table.
func NewFakeIPVS() *FakeIPVS { return &FakeIPVS{services: map[ServiceKey]*Service{}} }

func (f *FakeIPVS) record(format string, args ...any) {
	w := fmt.Sprintf(format, args...)
	f.Writes = append(f.Writes, w)
	if f.observe != nil {
		f.observe(w)
	}
}

// Services implements IPVS.
func (f *FakeIPVS) Services() ([]Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Service, 0, len(f.services))
	for _, s := range f.services {
		c := *s
		c.Dests = slices.Clone(s.Dests)
		out = append(out, c)
	}
	sortServices(out)
	return out, nil
}

// AddService implements IPVS.
func (f *FakeIPVS) AddService(s Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	if _, ok := f.services[s.Key]; ok {
		return fmt.Errorf("service %s: file exists", s.Key)
	}
	c := s
	c.Dests = nil
	f.services[s.Key] = &c
	f.record("add-service %s %s", s.Key, s.Scheduler)
	return nil
}

// UpdateService implements IPVS.
func (f *FakeIPVS) UpdateService(s Service) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	cur, ok := f.services[s.Key]
	if !ok {
		return fmt.Errorf("service %s: no such process", s.Key)
	}
	cur.Scheduler, cur.Persistence, cur.Netmask = s.Scheduler, s.Persistence, s.Netmask
	f.record("update-service %s %s", s.Key, s.Scheduler)
	return nil
}

// DelService implements IPVS.
func (f *FakeIPVS) DelService(k ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	if _, ok := f.services[k]; !ok {
		return fmt.Errorf("service %s: no such process", k)
	}
	delete(f.services, k)
	f.record("del-service %s", k)
	return nil
}

// destWrite finds d in k's service, checks that it is there (want true)
// or not (want false) as the kernel would, and lets change rewrite the
// list. The caller holds mu.
func (f *FakeIPVS) destWrite(k ServiceKey, d Dest, want bool, change func(s *Service, i int)) error {
	s, ok := f.services[k]
	if !ok {
		return fmt.Errorf("service %s: no such process", k)
	}
	i := slices.IndexFunc(s.Dests, func(x Dest) bool { return x.AddrPort() == d.AddrPort() })
	switch {
	case want && i < 0:
		return fmt.Errorf("real server %s of %s: no such process", d.AddrPort(), k)
	case !want && i >= 0:
		return fmt.Errorf("real server %s of %s: file exists", d.AddrPort(), k)
	}
	change(s, i)
	return nil
}

// AddDest implements IPVS.
func (f *FakeIPVS) AddDest(k ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	return f.destWrite(k, d, false, func(s *Service, _ int) {
		s.Dests = append(s.Dests, d)
		f.record("add-dest %s -> %s w%d", k, d.AddrPort(), d.Weight)
	})
}

// UpdateDest implements IPVS.
func (f *FakeIPVS) UpdateDest(k ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	return f.destWrite(k, d, true, func(s *Service, i int) {
		s.Dests[i] = d
		f.record("update-dest %s -> %s w%d", k, d.AddrPort(), d.Weight)
	})
}

// DelDest implements IPVS.
func (f *FakeIPVS) DelDest(k ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	return f.destWrite(k, d, true, func(s *Service, i int) {
		s.Dests = slices.Delete(s.Dests, i, i+1)
		f.record("del-dest %s -> %s", k, d.AddrPort())
	})
}

// TakeWrites returns the recorded writes and forgets them.
func (f *FakeIPVS) TakeWrites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.Writes
	f.Writes = nil
	return w
}

// FakeARP records gratuitous ARPs and lets a test deliver other hosts'
// ARP packets to the watchers, for tests and --dataplane fake. A FakeARP
// plugged into a FakeLAN also hears the others' gratuitous ARPs.
type FakeARP struct {
	mu       sync.Mutex
	sent     []string
	watchers map[string]func(netip.Addr)
	lan      *FakeLAN
}

// FakeLAN is a broadcast domain of FakeARP ports: a gratuitous ARP sent on
// one port reaches the watchers of every other port (same interface name)
// unless either is cut off, as on a switch with unplugged cables.
type FakeLAN struct {
	mu    sync.Mutex
	ports []*FakeARP
	cut   map[*FakeARP]bool
}

// Port plugs a new FakeARP into the LAN.
func (l *FakeLAN) Port() *FakeARP {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := &FakeARP{lan: l}
	l.ports = append(l.ports, p)
	return p
}

// Cut unplugs port p (cut true) or plugs it back.
func (l *FakeLAN) Cut(p *FakeARP, cut bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut == nil {
		l.cut = map[*FakeARP]bool{}
	}
	l.cut[p] = cut
}

func (l *FakeLAN) broadcast(from *FakeARP, iface string, ip netip.Addr) {
	l.mu.Lock()
	var to []*FakeARP
	if !l.cut[from] {
		for _, p := range l.ports {
			if p != from && !l.cut[p] {
				to = append(to, p)
			}
		}
	}
	l.mu.Unlock()
	for _, p := range to {
		p.Announce(iface, ip)
	}
}

// Watch implements ARP.
func (a *FakeARP) Watch(ctx context.Context, iface string, fn func(netip.Addr)) error {
	a.mu.Lock()
	if a.watchers == nil {
		a.watchers = map[string]func(netip.Addr){}
	}
	a.watchers[iface] = fn
	a.mu.Unlock()
	<-ctx.Done()
	a.mu.Lock()
	delete(a.watchers, iface)
	a.mu.Unlock()
	return nil
}

// Watching reports whether iface is watched.
func (a *FakeARP) Watching(iface string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.watchers[iface] != nil
}

// Announce delivers an ARP packet from another host with sender ip on
// iface.
func (a *FakeARP) Announce(iface string, ip netip.Addr) {
	a.mu.Lock()
	fn := a.watchers[iface]
	a.mu.Unlock()
	if fn != nil {
		fn(ip)
	}
}

// Gratuitous implements ARP.
func (a *FakeARP) Gratuitous(iface string, ip netip.Addr) error {
	a.mu.Lock()
	a.sent = append(a.sent, iface+" "+ip.String())
	lan := a.lan
	a.mu.Unlock()
	if lan != nil {
		lan.broadcast(a, iface, ip)
	}
	return nil
}

// Sent returns the gratuitous ARPs sent so far, as "iface vip".
func (a *FakeARP) Sent() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.sent)
}
