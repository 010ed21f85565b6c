package api

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/status"
)

// RenderStatus prints the status view the way crm_mon and ipvsadm -Ln
// would show it together.
func RenderStatus(w io.Writer, st status.Status) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Cluster Summary:\n")
	fmt.Fprintf(&b, "  * Time: %s (as seen from %s)\n", st.Time.Format(time.DateTime+" MST"), st.Node)
	switch {
	case st.DC != "":
		fmt.Fprintf(&b, "  * Current DC: %s (term %d) - partition with quorum\n", st.DC, st.Term)
	default:
		fmt.Fprintf(&b, "  * Current DC: NONE (term %d) - partition WITHOUT quorum\n", st.Term)
	}
	if st.Health.State != "" {
		fmt.Fprintf(&b, "  * Health: %s\n", oneLine(st.Health.String()))
	}
	if st.Warning != "" {
		fmt.Fprintf(&b, "  * WARNING: %s\n", st.Warning)
	}
	if st.CertWarning != "" {
		fmt.Fprintf(&b, "  * WARNING: %s\n", oneLine(st.CertWarning))
	}
	if st.HealthNote != "" {
		fmt.Fprintf(&b, "  * Real servers' health unknown: %s\n", oneLine(st.HealthNote))
	}
	fmt.Fprintf(&b, "  * Spec version: %d\n", st.SpecVersion)
	fmt.Fprintf(&b, "  * %d nodes configured, %d virtual services\n", st.NodesConfigured, len(st.Services))
	noQuorum := st.Policy.NoQuorum
	if noQuorum == "" {
		noQuorum = "stop"
	}
	fmt.Fprintf(&b, "  * no-quorum-policy: %s, takeover: %s\n", noQuorum, st.Policy.TakeoverPolicy())
	if p := st.Policy.PreferredDC; p != "" {
		preempt := "never takes the role from a healthy DC"
		if st.Policy.Preempt {
			preempt = "preempts: takes the role whenever it can direct"
		}
		fmt.Fprintf(&b, "  * preferred DC: %s (%s)\n", p, preempt)
	}

	if st.SkippedEntries > 0 {
		fmt.Fprintf(&b, "  * %d log entries skipped here: this node's release cannot read them (upgrade it)\n", st.SkippedEntries)
	}

	fmt.Fprintf(&b, "\nNode List:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	newest := 0
	for _, n := range st.Nodes {
		newest = max(newest, n.Schema)
	}
	for _, n := range st.Nodes {
		dp := ""
		switch {
		case n.Witness:
			dp = "witness (never directs)"
		case n.Dataplane != "":
			dp = "dataplane " + n.Dataplane
		}
		if n.CannotDirect != "" {
			dp += "; cannot direct: " + oneLine(n.CannotDirect)
		}
		if n.Standby {
			dp += "; STANDBY (no new connections, DC only if no other node can be)"
		}
		if n.Schema != 0 && n.Schema < newest {
			dp += fmt.Sprintf("; older release (schema %d of %d): upgrade it", n.Schema, newest)
		}
		fmt.Fprintf(tw, "  * %s\t%s\t%s\t%s\t%s\n", n.Name, n.Address, capitalize(n.Status), n.Role, dp)
	}
	tw.Flush()

	fmt.Fprintf(&b, "\nVirtual IPs:\n")
	if len(st.VIPs) == 0 {
		fmt.Fprintf(&b, "  (none)\n")
	}
	for _, v := range st.VIPs {
		fmt.Fprintf(&b, "  * %s%s: %s\n", v.Address, onIface(v.Interface), vipHolder(v))
		if v.Takeover != "" {
			fmt.Fprintf(&b, "      takeover: %s\n", v.Takeover)
		}
		if k := v.ThisNode; k != nil {
			fmt.Fprintf(&b, "      this node: %s\n", kernelText(*k))
		}
	}

	fmt.Fprintf(&b, "\nVirtual Services:\n")
	if len(st.Services) == 0 {
		fmt.Fprintf(&b, "  (none)\n")
	}
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, s := range st.Services {
		name := ""
		if s.Name != "" {
			name = " (" + s.Name + ")"
		}
		extra := ""
		if s.Persistence != "" {
			extra += " persistent " + s.Persistence
		}
		if s.HealthCheck != "" {
			extra += " check " + s.HealthCheck
		}
		fmt.Fprintf(tw, "  %s  %s\t%s%s%s\n", strings.ToUpper(s.Protocol), hostPort(s.VIP, s.Port), s.Scheduler, extra, name)
		fmt.Fprintf(tw, "    -> RemoteAddress:Port\tForward\tWeight\tNode\tHealth\n")
		if len(s.RealServers) == 0 {
			fmt.Fprintf(tw, "    -> (no real server online)\t\t\t\t\n")
		}
		for _, rs := range s.RealServers {
			health := healthText(rs)
			if rs.Drained != "" {
				health += "; drained: " + rs.Drained
			}
			fmt.Fprintf(tw, "    -> %s\t%s\t%d\t%s\t%s\n", hostPort(rs.Address, rs.Port), forwardName(s.Forwarding), rs.Weight, rs.Node, health)
		}
		if s.Fallback != "" {
			fmt.Fprintf(tw, "    fallback %s\t\t\t\t\n", s.Fallback)
		}
	}
	tw.Flush()

	if len(st.Resources) > 0 || st.ResourceNote != "" {
		fmt.Fprintf(&b, "\nResources (on the DC, in start order):\n")
		if st.ResourceNote != "" {
			fmt.Fprintf(&b, "  * %s\n", oneLine(st.ResourceNote))
		}
		for _, r := range st.Resources {
			line := fmt.Sprintf("  * %s (%s): %s since %s", r.Name, r.Kind, r.State, r.Since.Format(time.TimeOnly))
			if !r.Monitored.IsZero() {
				line += ", monitored " + r.Monitored.Format(time.TimeOnly)
			}
			if r.Failures > 0 {
				line += fmt.Sprintf("; %d failed actions, last: %s", r.Failures, oneLine(r.LastError))
			}
			fmt.Fprintln(&b, line)
		}
	}
	if len(st.Fencing.Devices) > 0 || len(st.Fencing.History) > 0 {
		fmt.Fprintf(&b, "\nFencing Devices:\n")
		if len(st.Fencing.Devices) == 0 {
			fmt.Fprintf(&b, "  (none)\n")
		}
		for _, d := range st.Fencing.Devices {
			fmt.Fprintf(&b, "  * %s (%s, %s): fences %s; %s\n", d.Name, d.Agent, d.Action, strings.Join(d.Hosts, ", "), checkText(d.Check))
		}
		fmt.Fprintf(&b, "\nFencing History:\n")
		writeFenceHistory(&b, st.Fencing.History)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// RenderFenceHistory prints fencing events as crm_mon's fencing history.
func RenderFenceHistory(w io.Writer, events []fsm.FenceEvent) error {
	var b strings.Builder
	writeFenceHistory(&b, events)
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFenceHistory(b *strings.Builder, events []fsm.FenceEvent) {
	if len(events) == 0 {
		fmt.Fprintf(b, "  (none)\n")
	}
	// Newest first, as crm_mon.
	for i := len(events) - 1; i >= 0; i-- {
		e := events[i]
		at := e.At.UTC().Format(time.DateTime + " MST")
		switch e.Result {
		case "":
			fmt.Fprintf(b, "  * %s of %s pending: by %s since %s (#%d: %s)\n", e.Action, e.Target, e.By, at, e.ID, oneLine(e.Reason))
		case fsm.FenceConfirmed:
			fmt.Fprintf(b, "  * %s confirmed down by an operator on %s at %s (#%d)\n", e.Target, e.By, at, e.ID)
		default:
			verb := "successful"
			if e.Result != fsm.FenceSuccess {
				verb = "failed"
			}
			fmt.Fprintf(b, "  * %s of %s %s: by %s at %s, level %d device %s, %d attempt(s), exit %d, %s (#%d: %s)\n",
				e.Action, e.Target, verb, e.By, e.Completed.UTC().Format(time.DateTime+" MST"), e.Level, e.Device, e.Attempts, e.ExitCode,
				(time.Duration(e.DurationMS) * time.Millisecond).String(), e.ID, oneLine(e.Reason))
			if e.Result != fsm.FenceSuccess && e.Output != "" {
				fmt.Fprintf(b, "      last output: %s\n", oneLine(lastLineText(e.Output)))
			}
		}
	}
}

func onIface(iface string) string {
	if iface == "" {
		return ""
	}
	return " on " + iface
}

// vipHolder says who the log records as holding a VIP.
func vipHolder(v status.VIPStatus) string {
	h := v.Holder
	switch {
	case h == nil:
		return "held by nobody (never claimed)"
	case h.Released:
		return fmt.Sprintf("held by nobody (%s let go in term %d: %s)", h.Node, h.Term, h.Reason)
	}
	return fmt.Sprintf("held by %s (term %d, since %s)", h.Node, h.Term, h.Since.UTC().Format(time.TimeOnly))
}

// kernelText is this node's kernel truth for a VIP.
func kernelText(k status.Kernel) string {
	var parts []string
	if k.OnInterface {
		parts = append(parts, "on "+k.Interface+" (answers ARP)")
	} else {
		parts = append(parts, "not on "+k.Interface)
	}
	if k.OnLo {
		parts = append(parts, "on lo (real server)")
	} else {
		parts = append(parts, "not on lo")
	}
	return strings.Join(parts, ", ")
}

func checkText(c *fsm.DeviceCheck) string {
	switch {
	case c == nil:
		return "not checked yet"
	case c.OK:
		return fmt.Sprintf("%s ok since %s", c.Action, c.At.UTC().Format(time.DateTime+" MST"))
	}
	return fmt.Sprintf("%s FAILED since %s: %s", c.Action, c.At.UTC().Format(time.DateTime+" MST"), oneLine(c.Error))
}

// oneLine keeps text that came from elsewhere (an agent's output, a
// reason) on one printable line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return ' '
		}
		return r
	}, s)
}

func lastLineText(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return lines[len(lines)-1]
}

// capitalize upper-cases the first letter. The status comes from the
// agent's JSON, so it may be empty (an agent of another version).
func capitalize(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if size == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[size:]
}

// healthText shows a checked real server's state, since when, and why
// it is down.
func healthText(rs status.RealServerStatus) string {
	if rs.Health == "" {
		return "-"
	}
	out := rs.Health
	if rs.Since != nil {
		out += " since " + rs.Since.UTC().Format(time.TimeOnly)
	}
	if rs.Health == "down" && rs.LastError != "" {
		out += " (" + rs.LastError + ")"
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

func hostPort(addr string, port uint16) string {
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

// forwardName uses ipvsadm's words for the forwarding method.
func forwardName(f string) string {
	switch f {
	case "route":
		return "Route"
	case "masq":
		return "Masq"
	case "tunnel":
		return "Tunnel"
	case "local":
		return "Local"
	}
	return f
}

// RenderIPVS prints a node's IPVS table the way `ipvsadm -Ln` does.
func RenderIPVS(w io.Writer, r IPVSResponse) error {
	var b strings.Builder
	fmt.Fprintf(&b, "IP Virtual Server table on %s (raftlb; %d IPVS writes since start)\n", r.Node, r.WritesTotal)
	fmt.Fprintf(&b, "Prot LocalAddress:Port Scheduler Flags\n")
	fmt.Fprintf(&b, "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n")
	for _, s := range r.Services {
		flags := ""
		if s.PersistenceS > 0 {
			flags = fmt.Sprintf(" persistent %d", s.PersistenceS)
			if s.Netmask != "" {
				flags += " mask " + s.Netmask
			}
		}
		fmt.Fprintf(&b, "%-4s %s %s%s\n", strings.ToUpper(s.Protocol), hostPort(s.VIP, s.Port), s.Scheduler, flags)
		for _, d := range s.RealServers {
			fmt.Fprintf(&b, "  -> %-28s %-7s %-6d %-10d %d\n", hostPort(d.Address, d.Port), forwardName(d.Forward), d.Weight, d.ActiveConns, d.InactiveConns)
		}
	}
	if len(r.Services) == 0 {
		fmt.Fprintf(&b, "(no services: only the DC balances the VIPs)\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
