package director

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

// slowFencer takes a moment per fencing and counts the fencings under way,
// so a fencing still running after the term that started it has ended is
// seen.
type slowFencer struct {
	fakeFencer
	running atomic.Int32
}

func (f *slowFencer) Fence(ctx context.Context, spec spec.Fencing, node, action string) fencing.Outcome {
	f.running.Add(1)
	defer f.running.Add(-1)
	time.Sleep(2 * time.Millisecond) // a fence agent does not stop at once
	return f.fakeFencer.Fence(ctx, spec, node, action)
}

// TestRequestsRacingTheRevokeAreAnsweredByTheTermOrRefused: an operator's
// fence requests and a hand-over (begun, then failed) delivered while the
// term is being revoked never reach a term that has ended: each is
// answered by the live term or refused as ErrNotDC, and once Run has
// returned no fencing of that term is still under way. Only the term's
// goroutine adds to its WaitGroup (inbox.go); run it with -race.
func TestRequestsRacingTheRevokeAreAnsweredByTheTermOrRefused(t *testing.T) {
	body, _ := json.Marshal(FenceRequest{Node: "m40"})
	for i := range 30 {
		f := &slowFencer{}
		w := newWorld(t, func(c *Config) { c.Fencer = f })
		w.c.setSpec(withTakeover(spec.TakeoverImmediate))
		stop := w.run()
		w.c.leaders <- leader(uint64(2 + i))
		testkit.WaitFor(t, "VIP claimed", func() bool { return w.has("eth0") && len(w.table()) == 1 })

		var wg sync.WaitGroup
		start := make(chan struct{})
		var answered, refused atomic.Int32
		for range 3 {
			wg.Go(func() {
				<-start
				for range 20 {
					_, err := w.d.serveFence(context.Background(), "m50", body)
					switch {
					case err == nil:
						answered.Add(1)
					case errors.Is(err, ErrNotDC):
						refused.Add(1)
					default:
						t.Errorf("fence request: %v, want an answer or ErrNotDC", err)
					}
				}
			})
		}
		wg.Go(func() {
			<-start
			w.c.setHandingOver(true)
			w.c.setHandingOver(false)
		})
		wg.Go(func() {
			<-start
			w.c.leaders <- follower
		})
		close(start)
		wg.Wait()
		stop()
		if n := f.running.Load(); n != 0 {
			t.Fatalf("round %d: %d fencings still under way after the director stopped: a request reached a term that had ended", i, n)
		}
		if answered.Load()+refused.Load() != 60 {
			t.Fatalf("round %d: %d answered and %d refused of 60 requests", i, answered.Load(), refused.Load())
		}
	}
}

// TestTheTermIsNotWokenByItsOwnRecords: a claim or release this term
// committed changes nothing it acts on; a spec change, a node in standby,
// or another node's release does.
func TestTheTermIsNotWokenByItsOwnRecords(t *testing.T) {
	w := newWorld(t, nil)
	tm := w.established(4)
	tm.wakes()
	if tm.wakes() {
		t.Fatal("wakes without any change")
	}
	w.c.apply(fsm.CmdClaimVIPs, fsm.ClaimVIPs{Node: "m30", Term: 4, VIPs: []netip.Addr{vip}, At: time.Now()})
	w.c.apply(fsm.CmdReleaseVIPs, fsm.ReleaseVIPs{Node: "m30", Term: 4, VIPs: []netip.Addr{vip}, Reason: fsm.ReleaseHandOver, At: time.Now()})
	if tm.wakes() {
		t.Fatal("woken by its own claim and release")
	}
	for _, change := range []struct {
		what  string
		apply func()
	}{
		{"a spec change", func() { w.c.setSpec(squid("wlc")) }},
		{"a node in standby", func() {
			w.c.apply(fsm.CmdNodeStandby, fsm.NodeStandby{Node: "m40", Standby: true, By: "m30", At: time.Now()})
		}},
		{"another node's claim", func() {
			w.c.apply(fsm.CmdClaimVIPs, fsm.ClaimVIPs{Node: "m40", Term: 5, VIPs: []netip.Addr{vip}, At: time.Now()})
		}},
	} {
		change.apply()
		if !tm.wakes() {
			t.Errorf("not woken by %s", change.what)
		}
	}
}

// probe asks the term a harmless request (a fence of a node no device
// fences) and reports whether it answered within a moment, and how. The
// term reads its inbox only in its waits: a pause between attempts, the
// takeover wait, its loop, a hand-over's grace; while it revokes it
// answers ErrNotDC.
func (w *world) probe() (answered bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	a := w.d.ask(ctx, request{kind: reqFence, node: "m99", from: "test"})
	if errors.Is(a.err, context.DeadlineExceeded) {
		return false, nil
	}
	return true, a.err
}

// revoking reports whether the term is being revoked (a hand-over's
// grace): it refuses requests as a term that ends.
func (w *world) revoking() bool {
	answered, err := w.probe()
	return answered && errors.Is(err, ErrNotDC) && w.d.current.Load() != nil
}
