package director

import (
	"fmt"
	"slices"
	"sync"

	"github.com/raftlb/raftlb/fsm"
)

// FakeIPVS is an in-memory IPVS table that records every write, for tests.
// It behaves like the kernel where that matters: adding a service or real
// server twice is an error, and so is deleting one that is not there.
type FakeIPVS struct {
	mu       sync.Mutex
	services map[fsm.ServiceKey]*Service
	// Writes lists every write, e.g. "add-dest 10.0.0.1:80/tcp -> 10.0.0.2:80".
	Writes []string
}

// NewFakeIPVS returns an empty table.
func NewFakeIPVS() *FakeIPVS { return &FakeIPVS{services: map[fsm.ServiceKey]*Service{}} }

func (f *FakeIPVS) record(format string, args ...any) {
	f.Writes = append(f.Writes, fmt.Sprintf(format, args...))
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
	cur, ok := f.services[s.Key]
	if !ok {
		return fmt.Errorf("service %s: no such process", s.Key)
	}
	cur.Scheduler, cur.Persistence, cur.Netmask = s.Scheduler, s.Persistence, s.Netmask
	f.record("update-service %s %s", s.Key, s.Scheduler)
	return nil
}

// DelService implements IPVS.
func (f *FakeIPVS) DelService(k fsm.ServiceKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.services[k]; !ok {
		return fmt.Errorf("service %s: no such process", k)
	}
	delete(f.services, k)
	f.record("del-service %s", k)
	return nil
}

func (f *FakeIPVS) dest(k fsm.ServiceKey, d Dest) (*Service, int, error) {
	s, ok := f.services[k]
	if !ok {
		return nil, -1, fmt.Errorf("service %s: no such process", k)
	}
	return s, slices.IndexFunc(s.Dests, func(x Dest) bool { return x.id() == d.id() }), nil
}

// AddDest implements IPVS.
func (f *FakeIPVS) AddDest(k fsm.ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, i, err := f.dest(k, d)
	if err != nil {
		return err
	}
	if i >= 0 {
		return fmt.Errorf("real server %s of %s: file exists", d.id(), k)
	}
	s.Dests = append(s.Dests, d)
	f.record("add-dest %s -> %s w%d", k, d.id(), d.Weight)
	return nil
}

// UpdateDest implements IPVS.
func (f *FakeIPVS) UpdateDest(k fsm.ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, i, err := f.dest(k, d)
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("real server %s of %s: no such process", d.id(), k)
	}
	s.Dests[i] = d
	f.record("update-dest %s -> %s w%d", k, d.id(), d.Weight)
	return nil
}

// DelDest implements IPVS.
func (f *FakeIPVS) DelDest(k fsm.ServiceKey, d Dest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, i, err := f.dest(k, d)
	if err != nil {
		return err
	}
	if i < 0 {
		return fmt.Errorf("real server %s of %s: no such process", d.id(), k)
	}
	s.Dests = slices.Delete(s.Dests, i, i+1)
	f.record("del-dest %s -> %s", k, d.id())
	return nil
}

// TakeWrites returns the recorded writes and forgets them.
func (f *FakeIPVS) TakeWrites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.Writes
	f.Writes = nil
	return w
}
