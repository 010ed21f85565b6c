package quorum

import (
	"errors"
	"fmt"
	"time"
)

// KernelExpirySlack is how late the kernel may drop an address whose
// lifetime has ended: its expiry work (check_lifetime in
// net/ipv4/devinet.c and its IPv6 twin) runs about once a second and
// rounds, so an address goes 0–1.25 s after its lifetime (measured in the
// lab, LAB.md); a quarter of a second more covers a slow scheduler.
const KernelExpirySlack = 1500 * time.Millisecond

// Lease is the arithmetic of the DC's VIP lease: the lifetime the kernel
// gives a VIP on the DC's interface, renewed in place only right after a
// verification of leadership. An agent that dies, hangs or is starved
// stops renewing, and its kernel drops the VIP by itself.
type Lease struct {
	Duration time.Duration
}

// DefaultLease is the lease the agent uses unless told otherwise; the
// README gives the lab figures behind it.
const DefaultLease = 2 * time.Second

// Validate checks that the kernel can hold the lease: whole seconds, at
// least one.
func (l Lease) Validate() error {
	switch {
	case l.Duration < time.Second:
		return fmt.Errorf("VIP lease %s: must be at least 1s", l.Duration)
	case l.Duration%time.Second != 0:
		return errors.New("VIP lease " + l.Duration.String() + ": the kernel counts address lifetimes in whole seconds")
	}
	return nil
}

// RenewEvery is how often the DC verifies its leadership and renews: a
// third of the lease, so the agent may miss two renewals (starved, or a
// verification that failed) before the VIP lapses.
func (l Lease) RenewEvery() time.Duration { return l.Duration / 3 }

// WriteWindow is how long after a verification the writes it allows
// (gratuitous ARP, IPVS, a lease renewal) may still be made; past it the
// DC verifies again before writing. A stall between the check and the
// write thus never yields a write more than this after the verification.
func (l Lease) WriteWindow() time.Duration { return l.Duration / 6 }

// OldHolderGone is the instant, on the new DC's monotonic clock, after
// which a VIP holder that did not let go has certainly lost it, when the
// new DC was elected at elected. The old holder renews only right after a
// verification, which needs a majority in its term; the majority that
// elected the new DC had moved to a later term by then, so the holder's
// last verification came before elected. Its last renewal came at most
// WriteWindow after that and ran for Duration; the kernel dropped the
// address at most KernelExpirySlack later.
func (l Lease) OldHolderGone(elected time.Time) time.Time {
	return elected.Add(l.Duration + l.WriteWindow() + KernelExpirySlack)
}
