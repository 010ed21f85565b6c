//go:build lab

package lab

import (
	"net/netip"
	"sync"
	"time"
)

// Holding is one span of time in which a node carried the VIP on its
// interface, as a poll of its kernel saw it: From the first poll that
// found it, To the first that did not (or the end of the watch, Open).
type Holding struct {
	From, To time.Time
	Open     bool
}

// HolderWatch polls every node every few milliseconds and records when a
// condition held there: who carried the VIP on its interface (the nodes'
// own account of invariant 1, beside the client's ARP judge), or who had
// IPVS rules for it (invariant 6).
type HolderWatch struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	spans map[string][]Holding
	errs  []error
}

// WatchHolders starts polling nss[name] for ip on dev.
func WatchHolders(nss map[string]*NS, dev string, ip netip.Addr) *HolderWatch {
	names := make([]string, 0, len(nss))
	for n := range nss {
		names = append(names, n)
	}
	return Watch(names, 5*time.Millisecond, func(n string) (bool, error) { return nss[n].HasAddr(dev, ip) })
}

// WatchIPVS starts polling each node's kernel for an IPVS service vip:port.
func WatchIPVS(nodes []string, vip netip.Addr, port uint16) *HolderWatch {
	return Watch(nodes, 20*time.Millisecond, func(n string) (bool, error) {
		_, ok, err := IPVSDests(n, vip, port)
		return ok, err
	})
}

// Watch starts polling holds(node) for every node, every period.
func Watch(nodes []string, period time.Duration, holds func(node string) (bool, error)) *HolderWatch {
	w := &HolderWatch{stop: make(chan struct{}), done: make(chan struct{}), spans: map[string][]Holding{}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			for _, name := range nodes {
				has, err := holds(name)
				now := time.Now()
				w.mu.Lock()
				if err != nil {
					if len(w.errs) < 10 {
						w.errs = append(w.errs, err)
					}
					w.mu.Unlock()
					continue
				}
				s := w.spans[name]
				holding := len(s) > 0 && s[len(s)-1].Open
				switch {
				case has && !holding:
					w.spans[name] = append(s, Holding{From: now, Open: true})
				case !has && holding:
					s[len(s)-1].To, s[len(s)-1].Open = now, false
				}
				w.mu.Unlock()
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// Stop ends the watch; spans still open end now.
func (w *HolderWatch) Stop() (map[string][]Holding, []error) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	out := map[string][]Holding{}
	for n, s := range w.spans {
		c := append([]Holding(nil), s...)
		for i := range c {
			if c[i].Open {
				c[i].To = now
			}
		}
		out[n] = c
	}
	return out, append([]error(nil), w.errs...)
}

// Overlap is how long a and b both held, in total.
func Overlap(a, b []Holding) time.Duration {
	var d time.Duration
	for _, x := range a {
		for _, y := range b {
			from, to := later(x.From, y.From), earlier(x.To, y.To)
			if to.After(from) {
				d += to.Sub(from)
			}
		}
	}
	return d
}

// FirstFrom is the start of the first span that starts at or after t.
func FirstFrom(s []Holding, t time.Time) (time.Time, bool) {
	for _, h := range s {
		if !h.From.Before(t) {
			return h.From, true
		}
	}
	return time.Time{}, false
}

// EndOfSpanAt is the end of the span that covers t (or ends first after
// it), and whether there is one.
func EndOfSpanAt(s []Holding, t time.Time) (time.Time, bool) {
	for _, h := range s {
		if h.To.After(t) {
			return h.To, true
		}
	}
	return time.Time{}, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
