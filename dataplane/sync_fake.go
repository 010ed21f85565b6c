package dataplane

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// FakeSync is a ConnSync in memory that records every call, for tests of
// the director's role switches. It refuses what the kernel refuses: a
// second daemon of one role, a stop of a role not running.
type FakeSync struct {
	mu      sync.Mutex
	running []SyncDaemon
	calls   []string
	conns   []Conn
	// Err, when set, fails every call.
	Err error
}

// SyncDaemons implements ConnSync.
func (f *FakeSync) SyncDaemons() ([]SyncDaemon, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return nil, f.Err
	}
	return slices.Clone(f.running), nil
}

// StartSyncDaemon implements ConnSync.
func (f *FakeSync) StartSyncDaemon(d SyncDaemon) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "start "+d.String())
	if f.Err != nil {
		return f.Err
	}
	if err := ValidSyncDaemon(d); err != nil {
		return err
	}
	if slices.ContainsFunc(f.running, func(r SyncDaemon) bool { return r.Role == d.Role }) {
		return fmt.Errorf("a %s daemon runs already", d.Role)
	}
	f.running = append(f.running, d)
	return nil
}

// StopSyncDaemon implements ConnSync.
func (f *FakeSync) StopSyncDaemon(role SyncRole) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "stop "+role.String())
	if f.Err != nil {
		return f.Err
	}
	n := len(f.running)
	f.running = slices.DeleteFunc(f.running, func(r SyncDaemon) bool { return r.Role == role })
	if len(f.running) == n {
		return fmt.Errorf("no %s daemon runs", role)
	}
	return nil
}

// Running is the daemons running now.
func (f *FakeSync) Running() []SyncDaemon {
	d, _ := f.SyncDaemons()
	return d
}

// Calls is every start and stop so far, in order.
func (f *FakeSync) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// Conns implements ConnSync: what SetConns put there.
func (f *FakeSync) Conns() ([]Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Err != nil {
		return nil, f.Err
	}
	return slices.Clone(f.conns), nil
}

// SetConns replaces the connection table.
func (f *FakeSync) SetConns(c []Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.conns = slices.Clone(c)
}

// DefaultTCPTimeout is the kernel's default for an established TCP
// connection's entry, what FakeSync reports.
const DefaultTCPTimeout = 15 * time.Minute

// TCPTimeout implements ConnSync.
func (f *FakeSync) TCPTimeout() (time.Duration, error) { return DefaultTCPTimeout, nil }
