package spec

import (
	"net/netip"
	"slices"
	"testing"
)

func TestDiff(t *testing.T) {
	if d := Diff(squidSpec(), squidSpec()); len(d) != 0 {
		t.Errorf("the same spec: %v", d)
	}
	changed := squidSpec()
	changed.Services[0].Scheduler = "wlc"
	changed.Services[0].HealthCheck = nil
	changed.VIPs[0].Interface = "bond0"
	extra := netip.MustParseAddr("172.95.69.101")
	changed.VIPs = append(changed.VIPs, VIP{Address: extra})
	changed.Services = append(changed.Services, Service{
		VIP: extra, Port: 53, Protocol: "udp", Scheduler: "sh", Forwarding: "route",
		RealServers: RealServers{Servers: []RealServer{{Address: netip.MustParseAddr("10.0.1.5"), Port: 53, Weight: 1}}},
	})
	changed.Policy.Takeover = "immediate"
	got := lines(Diff(squidSpec(), changed))
	want := []string{
		"changed vip 172.95.69.100: interface eth0 → bond0",
		"added vip 172.95.69.101 on the agent's --interface",
		"changed service squid 172.95.69.100:3128/tcp: scheduler rr → wlc; health check tcp every 2s (rise 2, fall 2) → (none)",
		"added service 172.95.69.101:53/udp: real servers: 10.0.1.5:53 (weight 1)",
		"changed policy: no_quorum stop → stop, takeover lease → immediate",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Diff:\n%q\nwant\n%q", got, want)
	}

	weights := changed
	weights.Services = slices.Clone(changed.Services)
	weights.Services[1].RealServers = RealServers{Servers: []RealServer{
		{Address: netip.MustParseAddr("10.0.1.5"), Port: 53, Weight: 0},
		{Address: netip.MustParseAddr("10.0.1.6"), Port: 53, Weight: 1},
	}}
	if got := lines(Diff(changed, weights)); !slices.Equal(got, []string{
		"changed service 172.95.69.101:53/udp: real servers added 10.0.1.6:53; 10.0.1.5:53 weight 1 → 0",
	}) {
		t.Errorf("weights: %q", got)
	}

	got = lines(Diff(squidSpec(), emptySpec()))
	if want := []string{"removed vip 172.95.69.100 on eth0", "removed service squid 172.95.69.100:3128/tcp"}; !slices.Equal(got, want) {
		t.Errorf("to the empty spec: %q, want %q", got, want)
	}
	got = lines(Diff(squidSpec(), fencedSpec()))
	if !slices.Contains(got, "added fence device ipmi: fence_ipmilan") || !slices.Contains(got, "changed fencing levels m30") {
		t.Errorf("fencing: %q", got)
	}
}

// emptySpec is the spec of a new cluster, as fsm.New starts it.
func emptySpec() Spec {
	return Spec{Policy: Policy{NoQuorum: DefaultNoQuorum, Takeover: DefaultTakeover}}
}

func lines(cs []Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}
