package fsm

import (
	"net/netip"
	"testing"

	"github.com/raftlb/raftlb/spec"
)

// TestBackends: all-nodes lists the online registered nodes, never a
// witness, at their bind address, sorted; an explicit list names the
// node behind each address it knows.
func TestBackends(t *testing.T) {
	st := State{Nodes: map[string]Node{
		"m30": testNode("m30", "10.0.0.30"),
		"m40": testNode("m40", "10.0.0.40"),
		"m50": testNode("m50", "10.0.0.50"),
		"w":   {Name: "w", Address: netip.MustParseAddr("10.0.0.9"), Witness: true},
	}}
	svc := spec.Service{Port: 80, RealServers: spec.RealServers{AllNodes: true, NodePort: 8080, NodeWeight: 2}}
	online := func(n string) bool { return n != "m40" }
	got := st.Backends(svc, online)
	if len(got) != 2 || got[0].Node != "m30" || got[1].Node != "m50" || got[0].Port != 8080 || got[0].Weight != 2 {
		t.Errorf("all-nodes backends %+v, want m30 and m50 (m40 offline, w a witness) on 8080 weight 2", got)
	}
	svc.RealServers = spec.RealServers{Servers: []spec.RealServer{{Address: netip.MustParseAddr("10.0.0.50"), Port: 81, Weight: 1}, {Address: netip.MustParseAddr("192.0.2.1"), Port: 81, Weight: 1}}}
	got = st.Backends(svc, online)
	if len(got) != 2 || got[0].Node != "m50" || got[1].Node != "" {
		t.Errorf("explicit backends %+v", got)
	}
}
