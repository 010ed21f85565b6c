package spec

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Change is one line of what an apply changes (or would): a VIP, a
// service, the policy or the fencing section added, removed or changed.
type Change struct {
	Op     string `json:"op"`   // added | removed | changed
	What   string `json:"what"` // vip | service | policy | fencing
	Name   string `json:"name"` // "172.95.69.100 on eth0", "squid 172.95.69.100:3128/tcp"
	Detail string `json:"detail,omitempty"`
}

func (c Change) String() string {
	s := strings.TrimSpace(fmt.Sprintf("%s %s %s", c.Op, c.What, c.Name))
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

// The operations of a Change.
const (
	Added   = "added"
	Removed = "removed"
	Changed = "changed"
)

// Diff lists what replacing from with to changes: VIPs, then services in
// to's order (removed ones last), then policy and fencing.
func Diff(from, to Spec) []Change {
	from, to = from.Normalized(), to.Normalized()
	var out []Change
	oldVIPs := map[string]VIP{}
	for _, v := range from.VIPs {
		oldVIPs[v.Address.String()] = v
	}
	newVIPs := map[string]bool{}
	for _, v := range to.VIPs {
		newVIPs[v.Address.String()] = true
		switch o, ok := oldVIPs[v.Address.String()]; {
		case !ok:
			out = append(out, Change{Op: Added, What: "vip", Name: vipName(v)})
		case o.Interface != v.Interface:
			out = append(out, Change{Op: Changed, What: "vip", Name: v.Address.String(), Detail: fmt.Sprintf("interface %s → %s", orAgents(o.Interface), orAgents(v.Interface))})
		}
	}
	for _, v := range from.VIPs {
		if !newVIPs[v.Address.String()] {
			out = append(out, Change{Op: Removed, What: "vip", Name: vipName(v)})
		}
	}

	oldSvcs := map[ServiceKey]Service{}
	for _, s := range from.Services {
		oldSvcs[s.Key()] = s
	}
	newSvcs := map[ServiceKey]bool{}
	for _, s := range to.Services {
		newSvcs[s.Key()] = true
		o, ok := oldSvcs[s.Key()]
		if !ok {
			out = append(out, Change{Op: Added, What: "service", Name: serviceName(s), Detail: realServersText(s.RealServers)})
			continue
		}
		if d := serviceDiff(o, s); d != "" {
			out = append(out, Change{Op: Changed, What: "service", Name: serviceName(s), Detail: d})
		}
	}
	for _, s := range from.Services {
		if !newSvcs[s.Key()] {
			out = append(out, Change{Op: Removed, What: "service", Name: serviceName(s)})
		}
	}

	if from.Policy.NoQuorum != to.Policy.NoQuorum || from.Policy.TakeoverPolicy() != to.Policy.TakeoverPolicy() {
		out = append(out, Change{Op: Changed, What: "policy", Detail: fmt.Sprintf("no_quorum %s → %s, takeover %s → %s",
			from.Policy.NoQuorum, to.Policy.NoQuorum, from.Policy.TakeoverPolicy(), to.Policy.TakeoverPolicy())})
	}
	if from.Policy.PreferredDC != to.Policy.PreferredDC || from.Policy.Preempt != to.Policy.Preempt {
		out = append(out, Change{Op: Changed, What: "preferred DC", Detail: fmt.Sprintf("%s → %s", preferredText(from.Policy), preferredText(to.Policy))})
	}
	out = append(out, fencingDiff(from.Fencing, to.Fencing)...)
	out = append(out, resourcesDiff(from.Resources, to.Resources)...)
	return out
}

func preferredText(p Policy) string {
	switch {
	case p.PreferredDC == "":
		return "(none)"
	case p.Preempt:
		return p.PreferredDC + " (preempts)"
	}
	return p.PreferredDC
}

func vipName(v VIP) string { return v.Address.String() + " on " + orAgents(v.Interface) }

func orAgents(iface string) string {
	if iface == "" {
		return "the agent's --interface"
	}
	return iface
}

func serviceName(s Service) string {
	if s.Name != "" {
		return s.Name + " " + s.Key().String()
	}
	return s.Key().String()
}

func realServersText(rs RealServers) string {
	if rs.AllNodes {
		return fmt.Sprintf("real servers: all nodes on port %d, weight %d", rs.NodePort, rs.NodeWeight)
	}
	var addrs []string
	for _, s := range rs.Servers {
		addrs = append(addrs, fmt.Sprintf("%s:%d (weight %d)", s.Address, s.Port, s.Weight))
	}
	return "real servers: " + strings.Join(addrs, ", ")
}

// serviceDiff names the parts of a service that differ.
func serviceDiff(o, n Service) string {
	var parts []string
	field := func(name string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			parts = append(parts, fmt.Sprintf("%s %v → %v", name, a, b))
		}
	}
	field("name", quoted(o.Name), quoted(n.Name))
	field("scheduler", o.Scheduler, n.Scheduler)
	field("forwarding", o.Forwarding, n.Forwarding)
	field("persistence", o.Persistence.Timeout, n.Persistence.Timeout)
	field("persistence netmask", o.Persistence.Netmask, n.Persistence.Netmask)
	if !reflect.DeepEqual(o.RealServers, n.RealServers) {
		parts = append(parts, realServersDiff(o.RealServers, n.RealServers))
	}
	if !reflect.DeepEqual(o.Fallback, n.Fallback) {
		parts = append(parts, fmt.Sprintf("fallback %s → %s", fallbackText(o.Fallback), fallbackText(n.Fallback)))
	}
	if !reflect.DeepEqual(o.HealthCheck, n.HealthCheck) {
		parts = append(parts, fmt.Sprintf("health check %s → %s", checkText(o.HealthCheck), checkText(n.HealthCheck)))
	}
	return strings.Join(parts, "; ")
}

func quoted(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func realServersDiff(o, n RealServers) string {
	if o.AllNodes || n.AllNodes {
		return fmt.Sprintf("%s → %s", realServersText(o), strings.TrimPrefix(realServersText(n), "real servers: "))
	}
	key := func(s RealServer) string { return fmt.Sprintf("%s:%d", s.Address, s.Port) }
	old := map[string]RealServer{}
	for _, s := range o.Servers {
		old[key(s)] = s
	}
	var added, changed, removed []string
	seen := map[string]bool{}
	for _, s := range n.Servers {
		seen[key(s)] = true
		switch p, ok := old[key(s)]; {
		case !ok:
			added = append(added, key(s))
		case p.Weight != s.Weight:
			changed = append(changed, fmt.Sprintf("%s weight %d → %d", key(s), p.Weight, s.Weight))
		}
	}
	for _, s := range o.Servers {
		if !seen[key(s)] {
			removed = append(removed, key(s))
		}
	}
	var parts []string
	for _, p := range []struct {
		label string
		list  []string
	}{{"real servers added", added}, {"removed", removed}, {"", changed}} {
		if len(p.list) > 0 {
			parts = append(parts, strings.TrimSpace(p.label+" "+strings.Join(p.list, ", ")))
		}
	}
	return strings.Join(parts, "; ")
}

func fallbackText(fb *RealServer) string {
	if fb == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s:%d", fb.Address, fb.Port)
}

func checkText(hc *HealthCheck) string {
	if hc == nil {
		return "(none)"
	}
	return fmt.Sprintf("%s every %s (rise %d, fall %d)", hc.Type, hc.Interval, hc.Rise, hc.Fall)
}

func fencingDiff(o, n Fencing) []Change {
	var out []Change
	old := map[string]FenceDevice{}
	for _, d := range o.Devices {
		old[d.Name] = d
	}
	seen := map[string]bool{}
	for _, d := range n.Devices {
		seen[d.Name] = true
		switch p, ok := old[d.Name]; {
		case !ok:
			out = append(out, Change{Op: Added, What: "fence device", Name: d.Name, Detail: d.Agent})
		case !reflect.DeepEqual(p, d):
			out = append(out, Change{Op: Changed, What: "fence device", Name: d.Name})
		}
	}
	for _, d := range o.Devices {
		if !seen[d.Name] {
			out = append(out, Change{Op: Removed, What: "fence device", Name: d.Name})
		}
	}
	if !reflect.DeepEqual(o.Levels, n.Levels) {
		nodes := map[string]bool{}
		for k := range o.Levels {
			nodes[k] = true
		}
		for k := range n.Levels {
			nodes[k] = true
		}
		var changed []string
		for k := range nodes {
			if !reflect.DeepEqual(o.Levels[k], n.Levels[k]) {
				changed = append(changed, k)
			}
		}
		slices.Sort(changed)
		out = append(out, Change{Op: Changed, What: "fencing levels", Name: strings.Join(changed, ", ")})
	}
	return out
}
