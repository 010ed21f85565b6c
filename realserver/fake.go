package realserver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Fake is an in-memory Kernel that records every write, for tests. Leased
// addresses expire on their own, as the kernel's do (on a timer, exactly
// at the end of their lifetime).
type Fake struct {
	mu      sync.Mutex
	addrs   map[string][]netip.Prefix
	leases  map[string]*time.Timer // "dev prefix" → the expiry of a leased address
	sysctls map[string]string
	// Writes lists every change made, e.g. "add lo 10.0.0.1/32",
	// "lease eth0 10.0.0.1/32 3s", "renew eth0 10.0.0.1/32 3s",
	// "expire eth0 10.0.0.1/32".
	Writes   []string
	observe  func(write string)
	detached bool
	refuse   error // what AddrLease answers, when set
}

// NewFake returns a Fake whose interfaces are lo plus devs and whose
// sysctls all start at "0".
func NewFake(devs ...string) *Fake {
	f := &Fake{addrs: map[string][]netip.Prefix{"lo": nil}, leases: map[string]*time.Timer{}, sysctls: map[string]string{}}
	for _, d := range devs {
		f.addrs[d] = nil
	}
	return f
}

// Observe calls fn with every address change (see Writes) as it is made,
// expiries included, with the fake's lock held: fn must not call back into
// the fake. An invariant checker watches a node's kernel this way.
func (f *Fake) Observe(fn func(write string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observe = fn
}

func (f *Fake) wrote(w string) {
	f.Writes = append(f.Writes, w)
	if f.observe != nil {
		f.observe(w)
	}
}

// Refuse makes every later AddrLease fail with err (nil: succeed again),
// as a kernel that refuses the VIP does.
func (f *Fake) Refuse(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refuse = err
}

// Detach makes every later write a no-op, as when the agent that would
// make them has died (kill -9) while the machine runs on: the addresses
// stay, and leased ones expire. Attach undoes it (the agent restarted).
func (f *Fake) Detach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = true
}

// Attach undoes Detach.
func (f *Fake) Attach() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = false
}

// PowerOff forgets every address, as a machine that lost power does:
// nothing is written, nothing observed.
func (f *Fake) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for dev := range f.addrs {
		f.addrs[dev] = nil
	}
	for k, t := range f.leases {
		t.Stop()
		delete(f.leases, k)
	}
}

func (f *Fake) dev(d string) error {
	if _, ok := f.addrs[d]; !ok {
		return fmt.Errorf("interface %s: %w", d, errNoLink)
	}
	return nil
}

// errNoLink is what the fake says of an interface it lacks, in the
// kernel's words.
var errNoLink = errors.New("Link not found")

// AddrAdd implements Kernel.
func (f *Fake) AddrAdd(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	if err := f.dev(dev); err != nil {
		return err
	}
	if !slices.Contains(f.addrs[dev], p) {
		f.addrs[dev] = append(f.addrs[dev], p)
		f.wrote(fmt.Sprintf("add %s %s", dev, p))
	}
	return nil
}

// AddrLease implements Kernel.
func (f *Fake) AddrLease(dev string, p netip.Prefix, lifetime time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	if err := f.dev(dev); err != nil {
		return err
	}
	if f.refuse != nil {
		return fmt.Errorf("address %s on %s: %w", p, dev, f.refuse)
	}
	if lifetime < time.Second || lifetime%time.Second != 0 {
		return fmt.Errorf("address %s on %s: lifetime %s is not a whole number of seconds: invalid argument", p, dev, lifetime)
	}
	key := dev + " " + p.String()
	if t, ok := f.leases[key]; ok {
		t.Stop()
	}
	if slices.Contains(f.addrs[dev], p) {
		f.wrote(fmt.Sprintf("renew %s %s %s", dev, p, lifetime))
	} else {
		f.addrs[dev] = append(f.addrs[dev], p)
		f.wrote(fmt.Sprintf("lease %s %s %s", dev, p, lifetime))
	}
	var t *time.Timer
	t = time.AfterFunc(lifetime, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.leases[key] != t {
			return // renewed or removed since
		}
		delete(f.leases, key)
		if i := slices.Index(f.addrs[dev], p); i >= 0 {
			f.addrs[dev] = slices.Delete(f.addrs[dev], i, i+1)
			f.wrote(fmt.Sprintf("expire %s %s", dev, p))
		}
	})
	f.leases[key] = t
	return nil
}

// AddrDel implements Kernel.
func (f *Fake) AddrDel(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	if _, ok := f.addrs[dev]; !ok {
		return nil // the interface is gone, and its addresses with it
	}
	key := dev + " " + p.String()
	if t, ok := f.leases[key]; ok {
		t.Stop()
		delete(f.leases, key)
	}
	if i := slices.Index(f.addrs[dev], p); i >= 0 {
		f.addrs[dev] = slices.Delete(f.addrs[dev], i, i+1)
		f.wrote(fmt.Sprintf("del %s %s", dev, p))
	}
	return nil
}

// Addrs implements Kernel.
func (f *Fake) Addrs(dev string) ([]netip.Prefix, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.dev(dev); err != nil {
		return nil, err
	}
	return slices.Clone(f.addrs[dev]), nil
}

// Sysctl implements Kernel.
func (f *Fake) Sysctl(key string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if v, ok := f.sysctls[key]; ok {
		return v, nil
	}
	return "0", nil
}

// SetSysctl implements Kernel.
func (f *Fake) SetSysctl(key, value string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.detached {
		return nil
	}
	f.sysctls[key] = value
	f.Writes = append(f.Writes, fmt.Sprintf("sysctl %s=%s", key, value))
	return nil
}

// ResetWrites forgets the recorded writes.
func (f *Fake) ResetWrites() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Writes = nil
}
