package quorum

import (
	"testing"
	"time"
)

func TestLeaseValidate(t *testing.T) {
	for _, ok := range []time.Duration{time.Second, DefaultLease, 10 * time.Second} {
		if err := (Lease{Duration: ok}).Validate(); err != nil {
			t.Errorf("lease %s: %v", ok, err)
		}
	}
	for _, bad := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, -time.Second} {
		if err := (Lease{Duration: bad}).Validate(); err == nil {
			t.Errorf("lease %s accepted", bad)
		}
	}
}

// TestOldHolderGone spells out the slack: the lease, the write window of
// the holder's last verification and the kernel's lateness.
func TestOldHolderGone(t *testing.T) {
	l := Lease{Duration: 2 * time.Second}
	elected := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	got := l.OldHolderGone(elected).Sub(elected)
	if want := 2*time.Second + l.WriteWindow() + KernelExpirySlack; got != want {
		t.Fatalf("old holder gone %s after the election, want %s", got, want)
	}
	if l.RenewEvery() >= l.Duration/2 || l.WriteWindow() >= l.RenewEvery() {
		t.Errorf("renew every %s, write window %s: want two missed renewals before a lapse, and a window shorter than a renewal period", l.RenewEvery(), l.WriteWindow())
	}
}

// TestAnswerLease: an answer lease sets the renewals' pace and the
// takeover wait, with its own slack; one the mechanism cannot carry is
// refused.
func TestAnswerLease(t *testing.T) {
	l := Lease{Duration: 2 * time.Second, Answer: 600 * time.Millisecond}
	if err := l.Validate(); err != nil {
		t.Fatal(err)
	}
	if l.RenewEvery() != 200*time.Millisecond || l.WriteWindow() != 100*time.Millisecond {
		t.Errorf("renew every %s, write window %s: want the answer lease's third and sixth", l.RenewEvery(), l.WriteWindow())
	}
	elected := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	if got, want := l.OldHolderGone(elected).Sub(elected), 725*time.Millisecond; got != want { // lease, write window, AnswerExpirySlack
		t.Errorf("old holder gone %s after the election, want %s", got, want)
	}
	for _, bad := range []time.Duration{100 * time.Millisecond, 3 * time.Second, 500*time.Millisecond + time.Microsecond, -time.Second} {
		if err := (Lease{Duration: 2 * time.Second, Answer: bad}).Validate(); err == nil {
			t.Errorf("answer lease %s accepted", bad)
		}
	}
}
