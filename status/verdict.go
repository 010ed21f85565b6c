package status

import (
	"fmt"
	"strings"
)

// Verdict is the cluster's health for a monitoring system, with a Nagios
// plugin's exit codes: `raftlb status` exits with Code.
type Verdict struct {
	State   string   `json:"state"` // ok | degraded | critical
	Code    int      `json:"code"`  // 0 | 1 | 2
	Reasons []string `json:"reasons"`
}

// The verdict's states and exit codes.
const (
	StateOK       = "ok"
	StateDegraded = "degraded"
	StateCritical = "critical"
)

// judge decides the verdict from the assembled view:
//   - critical (2): no quorum or no DC seen from this node; a VIP nobody
//     holds while the DC could hold it;
//   - degraded (1): a node offline; a real server down; a takeover
//     waiting (a fence, a lease); a fence device whose check failed; this
//     node's view stale;
//   - ok (0) otherwise.
func judge(st Status) Verdict {
	var critical, degraded []string
	if !st.Quorum || st.DC == "" {
		why := st.Warning
		if why == "" {
			why = "no DC is elected"
		}
		critical = append(critical, "no quorum: "+why)
	} else if st.Stale {
		degraded = append(degraded, "stale: "+st.Warning)
	}
	directs := false
	for _, n := range st.Nodes {
		if n.Status != "online" {
			degraded = append(degraded, fmt.Sprintf("node %s is %s", n.Name, n.Status))
		}
		if n.Name == st.DC {
			directs = !n.Witness && n.Dataplane != "none" && n.CannotDirect == ""
		}
	}
	for _, v := range st.VIPs {
		switch {
		case v.Takeover != "":
			degraded = append(degraded, fmt.Sprintf("VIP %s: %s", v.Address, v.Takeover))
		case v.HeldBy == "" && directs:
			critical = append(critical, fmt.Sprintf("VIP %s is held by nobody", v.Address))
		}
	}
	for _, s := range st.Services {
		for _, rs := range s.RealServers {
			if rs.Health == "down" {
				degraded = append(degraded, fmt.Sprintf("real server %s:%d of %s %s:%d is down", rs.Address, rs.Port, orKey(s.Name), s.VIP, s.Port))
			}
		}
	}
	if st.CertWarning != "" {
		degraded = append(degraded, st.CertWarning)
	}
	for _, d := range st.Fencing.Devices {
		if d.Check != nil && !d.Check.OK {
			degraded = append(degraded, fmt.Sprintf("fence device %s: %s failed", d.Name, d.Check.Action))
		}
	}
	switch {
	case len(critical) > 0:
		return Verdict{State: StateCritical, Code: 2, Reasons: append(critical, degraded...)}
	case len(degraded) > 0:
		return Verdict{State: StateDegraded, Code: 1, Reasons: degraded}
	}
	return Verdict{State: StateOK, Code: 0, Reasons: []string{}}
}

func orKey(name string) string {
	if name == "" {
		return "service"
	}
	return name
}

// String is the verdict in one line: "DEGRADED: node n3 is offline; …".
func (v Verdict) String() string {
	if len(v.Reasons) == 0 {
		return strings.ToUpper(v.State)
	}
	return strings.ToUpper(v.State) + ": " + strings.Join(v.Reasons, "; ")
}
