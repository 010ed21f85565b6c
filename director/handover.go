package director

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/raftlb/raftlb/dataplane"
)

// announcements watches, while this node is DC, which hosts announce our
// VIPs over ARP. Two things come of it:
//
//   - a DC handing over on purpose keeps its VIPs until the successor has
//     announced every one of them: the successor's gratuitous ARP is
//     broadcast, so once this node has seen it the clients have too, and
//     none is left with a cache entry pointing at a node that no longer
//     answers;
//   - another host announcing a VIP while this node holds it is an address
//     conflict (a second DC, or a host configured by hand), and is logged.
type announcements struct {
	arp    dataplane.ARP
	logger *slog.Logger
	// handingOver is set by the term while it hands over: only then is
	// another holder expected.
	handingOver atomic.Bool
	// conflict is told of each address conflict once a term (nil: no one).
	conflict func(vip netip.Addr)

	mu       sync.Mutex
	held     map[netip.Addr]bool // the VIPs this DC holds
	foreign  map[netip.Addr]bool // held VIPs a successor announced during the hand-over
	warned   map[netip.Addr]bool // conflicts already logged this term
	watching map[string]context.CancelFunc
	wg       sync.WaitGroup
	changed  chan struct{}
}

func newAnnouncements(arp dataplane.ARP, logger *slog.Logger) *announcements {
	return &announcements{
		arp: arp, logger: logger,
		held: map[netip.Addr]bool{}, foreign: map[netip.Addr]bool{}, warned: map[netip.Addr]bool{},
		watching: map[string]context.CancelFunc{}, changed: make(chan struct{}, 1),
	}
}

// hold records the VIPs held and the interfaces they are on, and starts
// watching any interface not yet watched.
func (a *announcements) hold(vips map[netip.Addr]string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = map[netip.Addr]bool{}
	for ip, iface := range vips {
		a.held[ip] = true
		if _, ok := a.watching[iface]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		a.watching[iface] = cancel
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			if err := a.arp.Watch(ctx, iface, a.seen); err != nil {
				a.logger.Warn("cannot watch ARP: a hand-over will keep the VIPs for the whole grace", "interface", iface, "err", err)
			}
		}()
	}
}

// seen is called for every ARP packet another host sends.
func (a *announcements) seen(sender netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.held[sender] {
		return
	}
	if a.handingOver.Load() {
		if !a.foreign[sender] {
			a.foreign[sender] = true
			select {
			case a.changed <- struct{}{}:
			default:
			}
		}
		return
	}
	if !a.warned[sender] {
		a.warned[sender] = true
		a.logger.Warn("another host announces a VIP this DC holds: address conflict", "vip", sender)
		if a.conflict != nil {
			a.conflict(sender)
		}
	}
}

// setHandingOver says whether the term hands over: announcements of the
// VIPs by another host are then the successor's, and are counted.
func (a *announcements) setHandingOver(on bool) {
	if a != nil {
		a.handingOver.Store(on)
	}
}

// allAnnounced reports whether every held VIP has been announced by
// another host since the hand-over began; only ARP is watched, so an IPv6
// VIP never is.
func (a *announcements) allAnnounced() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for ip := range a.held {
		if !ip.Is4() || !a.foreign[ip] {
			return false
		}
	}
	return true
}

// stop ends every watch and waits for them.
func (a *announcements) stop() {
	a.mu.Lock()
	for _, cancel := range a.watching {
		cancel()
	}
	a.watching = map[string]context.CancelFunc{}
	a.mu.Unlock()
	a.wg.Wait()
}
