package realserver

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
)

// Fake is an in-memory Kernel that records every write, for tests.
type Fake struct {
	mu      sync.Mutex
	addrs   map[string][]netip.Prefix
	sysctls map[string]string
	// Writes lists every change made, e.g. "add lo 10.0.0.1/32".
	Writes  []string
	observe func(write string)
}

// Observe calls fn with every address write ("add eth0 10.0.0.1/32",
// "del lo 10.0.0.1/32") as it is made, with the fake's lock held: fn must
// not call back into the fake. An invariant checker watches a node's
// kernel this way.
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

// PowerOff forgets every address, as a machine that lost power does:
// nothing is written, nothing observed.
func (f *Fake) PowerOff() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for dev := range f.addrs {
		f.addrs[dev] = nil
	}
}

// NewFake returns a Fake whose interfaces are lo plus devs and whose
// sysctls all start at "0".
func NewFake(devs ...string) *Fake {
	f := &Fake{addrs: map[string][]netip.Prefix{"lo": nil}, sysctls: map[string]string{}}
	for _, d := range devs {
		f.addrs[d] = nil
	}
	return f
}

func (f *Fake) dev(d string) error {
	if _, ok := f.addrs[d]; !ok {
		return fmt.Errorf("interface %s: Link not found", d)
	}
	return nil
}

// AddrAdd implements Kernel.
func (f *Fake) AddrAdd(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.dev(dev); err != nil {
		return err
	}
	if !slices.Contains(f.addrs[dev], p) {
		f.addrs[dev] = append(f.addrs[dev], p)
		f.wrote(fmt.Sprintf("add %s %s", dev, p))
	}
	return nil
}

// AddrDel implements Kernel.
func (f *Fake) AddrDel(dev string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.dev(dev); err != nil {
		return err
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
