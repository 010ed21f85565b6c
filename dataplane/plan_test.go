package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	vip = netip.MustParseAddr("172.95.69.100")
	m30 = netip.MustParseAddr("127.0.0.30")
	m40 = netip.MustParseAddr("127.0.0.40")
	m50 = netip.MustParseAddr("127.0.0.50")
)

// TestPlanIsEmptyWhenTheTableMatches: the kernel reports the DC's own entry
// as Local, and a persistent IPv4 service without a netmask as /32: both
// still match.
func TestPlanIsEmptyWhenTheTableMatches(t *testing.T) {
	key := ServiceKey{VIP: vip, Port: 3128, Protocol: ProtocolTCP}
	desired := []Service{{Key: key, Scheduler: "rr", Persistence: 20 * time.Second, Dests: []Dest{
		{Addr: m30, Port: 3128, Weight: 1, Forward: ForwardRoute},
		{Addr: m40, Port: 3128, Weight: 1, Forward: ForwardRoute},
	}}}
	current := []Service{{Key: key, Scheduler: "rr", Persistence: 20 * time.Second, Netmask: netip.MustParseAddr("255.255.255.255"), Dests: []Dest{
		{Addr: m30, Port: 3128, Weight: 1, Forward: ForwardLocal},
		{Addr: m40, Port: 3128, Weight: 1, Forward: ForwardRoute},
	}}}
	if ops := Plan(current, desired, map[netip.Addr]bool{vip: true}); len(ops) != 0 {
		t.Fatalf("no-op plan has %d ops: %v", len(ops), ops)
	}
}

func TestPlanWritesOnlyTheDifference(t *testing.T) {
	key := ServiceKey{VIP: vip, Port: 80, Protocol: "tcp"}
	other := ServiceKey{VIP: netip.MustParseAddr("127.0.9.9"), Port: 80, Protocol: "tcp"}
	gone := ServiceKey{VIP: vip, Port: 443, Protocol: "tcp"}
	current := []Service{
		{Key: key, Scheduler: "rr", Dests: []Dest{
			{Addr: m30, Port: 80, Weight: 1, Forward: "route"},
			{Addr: m40, Port: 80, Weight: 1, Forward: "route"},
			{Addr: m50, Port: 80, Weight: 1, Forward: "route"},
		}},
		{Key: gone, Scheduler: "rr"},
		{Key: other, Scheduler: "wlc"}, // not raftlb's: never touched
	}
	desired := []Service{{Key: key, Scheduler: "wlc", Dests: []Dest{
		{Addr: m30, Port: 80, Weight: 1, Forward: "route"},
		{Addr: m40, Port: 80, Weight: 5, Forward: "route"},
		{Addr: netip.MustParseAddr("127.0.0.60"), Port: 80, Weight: 1, Forward: "route"},
	}}}
	var got []string
	for _, o := range Plan(current, desired, map[netip.Addr]bool{vip: true}) {
		got = append(got, o.String())
	}
	want := []string{
		"update-service 172.95.69.100:80/tcp",
		"update-dest 172.95.69.100:80/tcp -> 127.0.0.40:80",
		"add-dest 172.95.69.100:80/tcp -> 127.0.0.60:80",
		"del-dest 172.95.69.100:80/tcp -> 127.0.0.50:80",
		"del-service 172.95.69.100:443/tcp",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestApplyAsksBeforeEveryWrite: a write the caller does not allow is not
// made, nor any after it; the count says how many were.
func TestApplyAsksBeforeEveryWrite(t *testing.T) {
	k := NewFakeIPVS()
	key := ServiceKey{VIP: vip, Port: 80, Protocol: ProtocolTCP}
	ops := Plan(nil, []Service{{Key: key, Scheduler: "rr", Dests: []Dest{
		{Addr: m30, Port: 80, Weight: 1, Forward: ForwardRoute},
		{Addr: m40, Port: 80, Weight: 1, Forward: ForwardRoute},
	}}}, map[netip.Addr]bool{vip: true})
	asked := 0
	refuse := errors.New("not verified")
	n, err := Apply(k, ops, func() error {
		if asked++; asked > 2 {
			return refuse
		}
		return nil
	})
	if n != 2 || !errors.Is(err, refuse) || asked != 3 {
		t.Fatalf("Apply: %d writes, %v after %d questions; want 2, the refusal, 3", n, err, asked)
	}
	want := []string{"add-service 172.95.69.100:80/tcp rr", "add-dest 172.95.69.100:80/tcp -> 127.0.0.30:80 w1"}
	if got := k.TakeWrites(); !slices.Equal(got, want) {
		t.Fatalf("writes %q, want %q", got, want)
	}
	n, err = Apply(k, ops[2:], func() error { return nil })
	if n != 1 || err != nil {
		t.Fatalf("Apply the rest: %d, %v", n, err)
	}
	if tab, _ := k.Services(); len(tab) != 1 || len(tab[0].Dests) != 2 {
		t.Fatalf("table %+v, want one service with two real servers", tab)
	}
}
