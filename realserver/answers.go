package realserver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

// What this node's kernel answers for a VIP on its interface (ARP replies,
// neighbour advertisements) is gated by a lease the kernel expires to the
// millisecond (dataplane.VIPLease, nftables in the agent): the address
// lifetime is the coarse backstop, this lease decides when a dead or
// frozen DC falls silent. The order of operations keeps a VIP silent
// whenever this node may not answer for it:
//
//   - every managed VIP is in the lease table before it goes on an
//     interface, so a VIP placed there is silent until granted;
//   - a VIP is granted only when it goes on its interface for a verified
//     DC (Apply with hold) or at a renewal (Renew), both right after a
//     verification;
//   - a VIP's lease is ended before the VIP leaves its interface, so this
//     node stops answering first.
//
// The caller holds m.mu for the methods below, except CheckAnswers.

// installAnswers makes vips (sorted) the lease table's managed set when it
// changed; VIPs that leave it lose their lease.
func (m *Manager) installAnswers(vips []netip.Addr) error {
	if m.answers == nil || (m.answersInstalled && slices.Equal(vips, m.answerSet)) {
		return nil
	}
	if err := m.answers.Install(vips); err != nil {
		return fmt.Errorf("VIP answers: %w", err)
	}
	m.answerSet, m.answersInstalled = vips, true
	return nil
}

// grantAnswers lets this node's kernel answer for vips for the answer
// lease from verified, the sending of the verification that allowed it:
// the kernel ends the grant then, however late it is committed.
func (m *Manager) grantAnswers(vips []netip.Addr, verified time.Time) error {
	if m.answers == nil || len(vips) == 0 {
		return nil
	}
	until := verified.Add(m.answerFor)
	if err := m.answers.Renew(vips, until); err != nil {
		return fmt.Errorf("VIP answers: %w", err)
	}
	for _, vip := range vips {
		m.granted[vip] = true
	}
	m.grantedUntil = until
	return nil
}

// endAnswers ends the lease of vips at once: from its return on, this
// node's kernel answers for none of them.
func (m *Manager) endAnswers(vips []netip.Addr) error {
	if m.answers == nil || len(vips) == 0 {
		return nil
	}
	// Forgotten before the kernel is asked: a release that fails is not
	// granted again by a repair.
	for _, vip := range vips {
		delete(m.granted, vip)
	}
	if err := m.answers.Release(vips); err != nil {
		return fmt.Errorf("VIP answers: %w", err)
	}
	return nil
}

// CheckAnswers verifies that the lease table is in the kernel as
// installed. One that is missing or damaged (an operator flushed the
// ruleset, or reloaded a firewall that does) is installed again, with the
// leases the kernel held: the VIPs granted and not ended since, until the
// last grant's deadline — not a moment longer, so nothing is granted that
// a verification did not allow, and the DC keeps answering across the
// repair. The error says what was wrong. Meanwhile — between the damage
// and this check — nothing filtered the answers, so a DC that died in
// that time keeps answering until its address lifetime ends.
func (m *Manager) CheckAnswers() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.answers == nil || !m.answersInstalled {
		return nil
	}
	err := m.answers.Check()
	if err == nil {
		return nil
	}
	if !errors.Is(err, dataplane.ErrLeaseDamaged) {
		return fmt.Errorf("checking the VIP answer lease: %w", err)
	}
	m.answersInstalled = false
	if ierr := m.installAnswers(sortedAddrs(m.managed)); ierr != nil {
		return fmt.Errorf("%w; installing it again failed: %w", err, ierr)
	}
	m.repairs++
	var again []netip.Addr
	for vip := range m.granted {
		if m.held[vip] {
			again = append(again, vip)
		}
	}
	if len(again) == 0 {
		return fmt.Errorf("%w: installed again", err)
	}
	slices.SortFunc(again, netip.Addr.Compare)
	switch gerr := m.answers.Renew(again, m.grantedUntil); {
	case errors.Is(gerr, dataplane.ErrLeaseOver):
		return fmt.Errorf("%w: installed again (its leases had ended)", err)
	case gerr != nil:
		return fmt.Errorf("%w: installed again; its leases could not be restored: %w", err, gerr)
	}
	return fmt.Errorf("%w: installed again, with its leases until %s", err, m.grantedUntil.Format("15:04:05.000"))
}

// AnswerRepairs counts the times CheckAnswers found the lease table
// damaged and installed it again.
func (m *Manager) AnswerRepairs() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.repairs
}

// SilenceAnswers ends the answer lease of every VIP this node holds, and
// keeps the VIPs where they are: the DC's write that granted it may have
// come too late after its verification (director: grantedLate). The next
// Renew grants it again.
func (m *Manager) SilenceAnswers() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.endAnswers(sortedAddrs(m.held))
}
