package realserver

import (
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

// clock is a settable clock for the fake lease.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func answersManager(t *testing.T) (*Manager, *Fake, *dataplane.FakeLease, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)}
	k := NewFake("eth0")
	l := dataplane.NewFakeLease(c.Now)
	m := New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), Lease: 2 * time.Second,
		Answers: l, AnswerLease: 500 * time.Millisecond, Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	return m, k, l, c
}

// TestAVIPIsSilentUnlessGranted: a VIP goes on its interface only once it
// is in the lease table, and is answered only while its lease (granted by
// the claim, extended by Renew) lives; a release ends the lease before the
// address leaves the interface.
func TestAVIPIsSilentUnlessGranted(t *testing.T) {
	m, k, l, c := answersManager(t)
	var silentAtAdd, answeredAtDel []string
	k.Observe(func(w string) {
		switch {
		case strings.HasPrefix(w, "lease eth0 "+vip.String()) && l.Answers(vip):
			silentAtAdd = append(silentAtAdd, w)
		case strings.HasPrefix(w, "del eth0 "+vip.String()) && l.Answers(vip):
			answeredAtDel = append(answeredAtDel, w)
		}
	})
	if err := m.Apply(vips(), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if l.Answers(vip) {
		t.Fatal("a follower's VIP is answered: its kernel would answer ARP for it")
	}
	if err := m.Apply(vips(), holdIt, c.Now()); err != nil {
		t.Fatal(err)
	}
	if len(silentAtAdd) != 0 {
		t.Errorf("the VIP went on eth0 while nothing filtered its answers: %v", silentAtAdd)
	}
	if !l.Answers(vip) {
		t.Fatal("a claimed VIP is not answered")
	}
	c.add(400 * time.Millisecond)
	if _, err := m.Renew(c.Now()); err != nil {
		t.Fatal(err)
	}
	c.add(400 * time.Millisecond)
	if !l.Answers(vip) {
		t.Fatal("a renewed VIP fell silent before its lease ended")
	}
	c.add(200 * time.Millisecond)
	if l.Answers(vip) {
		t.Fatal("a VIP whose lease ran out without a renewal is still answered")
	}
	if _, err := m.Renew(c.Now()); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if has(t, k, "eth0") || l.Answers(vip) {
		t.Fatalf("after the release: on eth0 %v, answered %v; want neither", has(t, k, "eth0"), l.Answers(vip))
	}
	if len(answeredAtDel) != 0 {
		t.Errorf("the VIP left eth0 while still answered: %v", answeredAtDel)
	}
}

// TestAFlushedLeaseTableIsInstalledAgain: an operator's `nft flush
// ruleset` is found by CheckAnswers, which installs the table again with
// the leases the kernel held — the VIP is answered across the repair, and
// falls silent at the old deadline unless a renewal extends it. A lease
// ended since (SilenceAnswers) is not restored.
func TestAFlushedLeaseTableIsInstalledAgain(t *testing.T) {
	m, _, l, c := answersManager(t)
	if err := m.Apply(vips(), holdIt, c.Now()); err != nil {
		t.Fatal(err)
	}
	if err := m.CheckAnswers(); err != nil {
		t.Fatalf("an intact table: %v", err)
	}
	c.add(300 * time.Millisecond)
	l.Damage()
	err := m.CheckAnswers()
	if !errors.Is(err, dataplane.ErrLeaseDamaged) {
		t.Fatalf("CheckAnswers after a flush: %v, want ErrLeaseDamaged", err)
	}
	if err := l.Check(); err != nil {
		t.Fatalf("the table is not back: %v", err)
	}
	if !l.Answers(vip) {
		t.Fatal("restored without its lease: the DC fell silent until its next renewal")
	}
	c.add(200 * time.Millisecond)
	if l.Answers(vip) {
		t.Fatal("the restored lease outlived the deadline the verification allowed")
	}
	if _, err := m.Renew(c.Now()); err != nil {
		t.Fatal(err)
	}
	if !l.Answers(vip) || m.AnswerRepairs() != 1 {
		t.Fatalf("after the renewal: answered %v, repairs %d; want answered and one repair", l.Answers(vip), m.AnswerRepairs())
	}
	if err := m.SilenceAnswers(); err != nil {
		t.Fatal(err)
	}
	l.Damage()
	if err := m.CheckAnswers(); !errors.Is(err, dataplane.ErrLeaseDamaged) {
		t.Fatalf("CheckAnswers after a second flush: %v, want ErrLeaseDamaged", err)
	}
	if l.Answers(vip) {
		t.Fatal("a repair restored a lease that had been ended")
	}
	// A repair after the deadline restores nothing either.
	if _, err := m.Renew(c.Now()); err != nil {
		t.Fatal(err)
	}
	c.add(time.Second)
	l.Damage()
	if err := m.CheckAnswers(); !errors.Is(err, dataplane.ErrLeaseDamaged) || l.Answers(vip) {
		t.Fatalf("a repair after the deadline: %v, answered %v; want ErrLeaseDamaged and silent", err, l.Answers(vip))
	}
}

// TestAFailedReleaseOfTheLeaseStillTakesTheVIPOff: a lease that cannot be
// ended (the table is gone) does not keep the VIP on its interface.
func TestAFailedReleaseOfTheLeaseStillTakesTheVIPOff(t *testing.T) {
	m, k, l, c := answersManager(t)
	if err := m.Apply(vips(), holdIt, c.Now()); err != nil {
		t.Fatal(err)
	}
	l.FailNext(errors.New("netlink: no buffer space"))
	if err := m.Apply(vips(), nil, time.Time{}); err == nil {
		t.Error("the failed release of the lease is not reported")
	}
	if has(t, k, "eth0") {
		t.Fatal("the VIP stayed on eth0 because its lease could not be ended")
	}
}

// TestARestartEndsTheLastRunsLeases: a restarted agent's Start ends what
// the last run granted.
func TestARestartEndsTheLastRunsLeases(t *testing.T) {
	m, k, l, c := answersManager(t)
	if err := m.Apply(vips(), holdIt, c.Now()); err != nil {
		t.Fatal(err)
	}
	again := New(k, Config{Interface: "eth0", StateFile: m.stateFile, Lease: 2 * time.Second, Answers: l, AnswerLease: 500 * time.Millisecond, Logger: discard()})
	if err := again.Start(); err != nil {
		t.Fatal(err)
	}
	if l.Answers(vip) || has(t, k, "eth0") {
		t.Fatalf("after a restart: answered %v, on eth0 %v; want neither", l.Answers(vip), has(t, k, "eth0"))
	}
}
