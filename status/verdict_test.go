package status

import (
	"slices"
	"testing"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
)

func TestJudge(t *testing.T) {
	healthy := func() Status {
		return Status{
			DC: "n1", Quorum: true,
			Nodes: []cluster.NodeView{{Name: "n1", Status: "online", Dataplane: "kernel"}, {Name: "n2", Status: "online", Dataplane: "kernel"}},
			VIPs:  []VIPStatus{{Address: "172.95.69.100", HeldBy: "n1"}},
			Services: []ServiceStatus{{Name: "squid", VIP: "172.95.69.100", Port: 3128, RealServers: []RealServerStatus{
				{Address: "10.0.0.1", Port: 3128, Health: "up"}, {Address: "10.0.0.2", Port: 3128, Health: "up"},
			}}},
		}
	}
	for _, tc := range []struct {
		name    string
		mod     func(*Status)
		state   string
		code    int
		reasons []string
	}{
		{"healthy", func(*Status) {}, StateOK, 0, []string{}},
		{"a node offline", func(s *Status) { s.Nodes[1].Status = "offline" }, StateDegraded, 1, []string{"node n2 is offline"}},
		{"a real server down", func(s *Status) { s.Services[0].RealServers[1].Health = "down" }, StateDegraded, 1,
			[]string{"real server 10.0.0.2:3128 of squid 172.95.69.100:3128 is down"}},
		{"a takeover waiting", func(s *Status) { s.VIPs[0].HeldBy, s.VIPs[0].Takeover = "", "n1 fences n2 first" }, StateDegraded, 1,
			[]string{"VIP 172.95.69.100: n1 fences n2 first"}},
		{"a fence device failing", func(s *Status) {
			s.Fencing.Devices = []DeviceStatus{{Name: "ipmi", Check: &fsm.DeviceCheck{Action: fsm.CheckMonitor, Error: "x"}}}
		}, StateDegraded, 1, []string{"fence device ipmi: monitor failed"}},
		{"a certificate running out", func(s *Status) { s.CertWarning = "this node's certificate expires in 9 day(s)" }, StateDegraded, 1,
			[]string{"this node's certificate expires in 9 day(s)"}},
		{"stale", func(s *Status) { s.Stale, s.Warning = true, "catching up" }, StateDegraded, 1, []string{"stale: catching up"}},
		{"no quorum", func(s *Status) {
			s.DC, s.Quorum, s.Warning = "", false, "this node reaches 1 of 3 voters"
			s.Nodes[1].Status = "offline"
		},
			StateCritical, 2, []string{"no quorum: this node reaches 1 of 3 voters", "node n2 is offline"}},
		{"a VIP held by nobody", func(s *Status) { s.VIPs[0].HeldBy = "" }, StateCritical, 2, []string{"VIP 172.95.69.100 is held by nobody"}},
		{"no VIP holder without a data plane", func(s *Status) { s.VIPs[0].HeldBy = ""; s.Nodes[0].Dataplane = "none" }, StateOK, 0, []string{}},
	} {
		st := healthy()
		tc.mod(&st)
		v := judge(st)
		if v.State != tc.state || v.Code != tc.code || !slices.Equal(v.Reasons, tc.reasons) {
			t.Errorf("%s: %+v, want %s (%d) %q", tc.name, v, tc.state, tc.code, tc.reasons)
		}
	}
}
