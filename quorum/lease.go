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
	// Answer, when not zero, is the lease on what the DC's kernel answers
	// for a VIP (ARP replies, neighbour advertisements), which the kernel
	// expires to the millisecond (dataplane.NFTLease): the address
	// lifetime (Duration) is then only the backstop, and the renewals
	// and the takeover wait follow Answer.
	Answer time.Duration
}

// AnswerExpirySlack is how much longer than its lease the old holder's
// kernel may still answer for a VIP. Each renewal ends twice in the
// kernel (dataplane.NFTLease): at a deadline, an absolute time counted
// from the verification's sending, however late the renewal is committed;
// and by a timeout counted from the commit, which comes at most
// WriteWindow after the verification while the process runs. The deadline
// ends it on time: the last answer was measured within a few milliseconds
// of the lease's end (up to a jiffy, 4 ms at HZ=250, early on the
// development kernel, at most 1.4 ms late on the lab's 6.1: figures
// nft_lease_expiry_late_max_ms and lab_nft_lease_expiry_late_max*_ms,
// dataplane's lease tests, which the lab's TestNFTLeaseOnTheLabKernel
// runs; TestLeaseKernelDeadline for a commit made late). The timeout is
// the backstop should the holder's wall clock be stepped back; it runs
// 20 ms past the deadline (dataplane's leaseTimeoutMargin, so that the
// exact deadline, not the jiffy-stamped timeout, ends a lease), and the
// kernel may end it up to a jiffy early, never more than its precision
// late. 25 ms covers that margin, the precision and the two clocks' drift
// over a second. A stall between the holder's check of its write window and the
// commit (the lab's TCG guest stalls up to about 200 ms, LAB.md) would
// outlast it only in the backstop's case: a double fault (a clock stepped
// back during a stall) the wait does not cover.
const AnswerExpirySlack = 25 * time.Millisecond

// StallSlack is how long after its write window a write that lets the
// kernel answer may return before the DC takes it for a stalled one and
// ends the answers it granted (director: grantedLate): a write that
// returns this late was committed late, and only the deadline stands
// behind it. Longer than the scheduling hiccups of a busy or emulated
// machine, so a healthy DC does not silence itself.
const StallSlack = 250 * time.Millisecond

// WriteLateAfter is how long after a verification's sending a write it
// allowed may return before it counts as stalled (StallSlack).
func (l Lease) WriteLateAfter() time.Duration { return l.WriteWindow() + StallSlack }

// MinAnswerLease is the shortest answer lease accepted: renewed three
// times a lease, each after a round of verification with a majority, it
// must outlast a verification's round trip and a scheduler's hiccup, or a
// healthy DC would go silent between two renewals.
const MinAnswerLease = 300 * time.Millisecond

// DefaultLease is the lease the agent uses unless told otherwise; the
// README gives the lab figures behind it.
const DefaultLease = 2 * time.Second

// DefaultAnswerLease is the answer lease the agent uses unless told
// otherwise: renewed every 100 ms, it outlasts a stall of 200 ms — as long
// as the DC's Raft leader lease (cluster.DefaultTiming), past which the DC
// steps down anyway. A new DC waits 300 + 50 + 25 ms after the bound of
// the old holder's last verification (cluster.ContactBound); with three
// voters it is elected T + T/8 = 281 ms after it last heard from the old
// DC at the default heartbeat timeout (cluster/detect.go), so `takeover:
// lease` costs at most 94 ms more than `immediate`, less than a renewal
// period. (At 600 ms, until 2026-12-07, it cost 444 ms more.)
const DefaultAnswerLease = 300 * time.Millisecond

// Validate checks that the kernel can hold the lease: whole seconds, at
// least one.
func (l Lease) Validate() error {
	switch {
	case l.Duration < time.Second:
		return fmt.Errorf("VIP lease %s: must be at least 1s", l.Duration)
	case l.Duration%time.Second != 0:
		return errors.New("VIP lease " + l.Duration.String() + ": the kernel counts address lifetimes in whole seconds")
	case l.Answer == 0:
	case l.Answer < MinAnswerLease:
		return fmt.Errorf("ARP lease %s: must be at least %s (renewed three times a lease, each after a verification), or 0 for none", l.Answer, MinAnswerLease)
	case l.Answer > l.Duration:
		return fmt.Errorf("ARP lease %s: must not be longer than the VIP lease %s, which is its backstop", l.Answer, l.Duration)
	case l.Answer%time.Millisecond != 0:
		return fmt.Errorf("ARP lease %s: the kernel counts it in whole milliseconds", l.Answer)
	}
	return nil
}

// base is the lease the renewals follow: the answer lease when there is
// one, else the address lifetime.
func (l Lease) base() time.Duration {
	if l.Answer > 0 {
		return l.Answer
	}
	return l.Duration
}

// RenewEvery is how often the DC verifies its leadership and renews: a
// third of the lease, so the agent may miss two renewals (starved, or a
// verification that failed) before the VIP lapses.
func (l Lease) RenewEvery() time.Duration { return l.base() / 3 }

// WriteWindow is how long after a verification the writes it allows
// (gratuitous ARP, IPVS, a lease renewal) may still be made; past it the
// DC verifies again before writing. A stall between the check and the
// write thus never yields a write more than this after the verification.
func (l Lease) WriteWindow() time.Duration { return l.base() / 6 }

// OldHolderGone is the instant, on the new DC's monotonic clock, after
// which a VIP holder that did not let go has certainly lost it, when its
// last verification was sent at the latest at elected (the election, or
// the bound the voters' last contact with the holder gives:
// cluster.ContactBound). The old holder renews only right after a
// verification, which needs a majority in its term; the majority that
// elected the new DC had moved to a later term by then, so the holder's
// last verification came before the election. Its last renewal came at most
// WriteWindow after that and ran for Duration; the kernel dropped the
// address at most KernelExpirySlack later.
//
// With an answer lease what matters is whether the old holder's kernel
// still answers ARP for the VIP, not whether the address is still there:
// its last renewal of the answer lease ran until its verification's
// sending plus Answer (the deadline), or — its wall clock stepped back —
// for Answer from its commit, at most WriteWindow after; the kernel stops
// answering at most AnswerExpirySlack after that.
func (l Lease) OldHolderGone(elected time.Time) time.Time {
	if l.Answer > 0 {
		return elected.Add(l.Answer + l.WriteWindow() + AnswerExpirySlack)
	}
	return elected.Add(l.Duration + l.WriteWindow() + KernelExpirySlack)
}
