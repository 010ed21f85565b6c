package director

import (
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
