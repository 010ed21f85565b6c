package director

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestRenewRestoresAFlushedAnswerTable: the DC's renewal finds the table
// that gates the VIPs' answers gone (an operator flushed the ruleset),
// installs it again and renews, so the VIP is answered again, gated as
// before.
func TestRenewRestoresAFlushedAnswerTable(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	if !w.answers.Answers(vip) {
		t.Fatal("the claimed VIP is not answered")
	}
	w.answers.Damage()
	tm.answersChecked = time.Time{}
	if err := tm.handle(evRenew); err != nil {
		t.Fatal(err)
	}
	if err := w.answers.Check(); err != nil {
		t.Fatalf("the table is not back after the renewal: %v", err)
	}
	if !w.answers.Answers(vip) {
		t.Fatal("the VIP is not answered after the renewal")
	}
	if w.rs.AnswerRepairs() != 1 {
		t.Fatalf("repairs %d, want 1", w.rs.AnswerRepairs())
	}
}

// TestALateGrantIsSilenced: a renewal whose write reached the kernel after
// its verification's window had closed (the agent stalled between the
// check and the write) ends the answers it granted at once; the next
// renewal, verified afresh, grants them again.
func TestALateGrantIsSilenced(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(2)
	stall := true
	w.k.Observe(func(write string) {
		if stall && (strings.HasPrefix(write, "renew eth0 ") || strings.HasPrefix(write, "lease eth0 ")) {
			// The write lands long after the check that allowed it.
			tm.verifiedAt = time.Now().Add(-time.Hour)
		}
	})
	err := tm.handle(evRenew)
	if !errors.Is(err, errLateGrant) {
		t.Fatalf("a renewal that landed late: %v, want errLateGrant", err)
	}
	if w.answers.Answers(vip) {
		t.Fatal("a late renewal left the VIP answered")
	}
	stall = false
	if err := tm.handle(evRenew); err != nil {
		t.Fatal(err)
	}
	if !w.answers.Answers(vip) {
		t.Fatal("the next verified renewal did not grant the answers again")
	}
}
