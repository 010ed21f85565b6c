package director

import (
	"context"
	"maps"
	"slices"
	"sync"
)

var _ Members = (*fakeMembers)(nil)

// fakeMembers is gossip's view as a test sets it: m30 (this node), m40
// and m50 online, and whatever the test changes, told to the
// subscribers.
type fakeMembers struct {
	mu         sync.Mutex
	online     map[string]bool
	stopping   map[string]bool
	noDirect   string          // why m30 cannot direct
	cannot     map[string]bool // other nodes that cannot direct
	reconciled int             // ReconcileMembers calls
	subs       []chan struct{}
}

func newFakeMembers() *fakeMembers {
	return &fakeMembers{online: map[string]bool{"m30": true, "m40": true, "m50": true}}
}

// Name is the DC's: the director's tests run on m30.
func (m *fakeMembers) Name() string { return "m30" }

func (m *fakeMembers) OnlineNodes() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.online)
}

func (m *fakeMembers) StoppingNodes() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.stopping)
}

func (m *fakeMembers) LiveMembers() map[string]bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]bool{}
	for n, up := range m.online {
		if up {
			out[n] = !m.cannot[n]
		}
	}
	return out
}

// setOnline changes a node's gossip state and tells the subscribers.
func (m *fakeMembers) setOnline(name string, up bool) {
	m.mu.Lock()
	m.online[name] = up
	m.mu.Unlock()
	m.notify()
}

// setStopping says in "gossip" that name's agent is stopping (Drain).
func (m *fakeMembers) setStopping(name string) {
	m.mu.Lock()
	if m.stopping == nil {
		m.stopping = map[string]bool{}
	}
	m.stopping[name] = true
	m.mu.Unlock()
	m.notify()
}

func (m *fakeMembers) SubscribeMembership() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ch := make(chan struct{}, 1)
	m.subs = append(m.subs, ch)
	return ch, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.subs = slices.DeleteFunc(m.subs, func(x chan struct{}) bool { return x == ch })
	}
}

func (m *fakeMembers) notify() {
	m.mu.Lock()
	subs := slices.Clone(m.subs)
	m.mu.Unlock()
	for _, ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (m *fakeMembers) ReconcileMembers(context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconciled++
}

func (m *fakeMembers) reconciledMembers() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reconciled
}

func (m *fakeMembers) CanDirect() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.noDirect == "", m.noDirect
}

func (m *fakeMembers) SetCannotDirect(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.noDirect = reason
}

// Directors are the online nodes, this one unless it cannot direct.
func (m *fakeMembers) Directors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n, up := range m.online {
		if up && (n != m.Name() || m.noDirect == "") && !m.cannot[n] {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}
