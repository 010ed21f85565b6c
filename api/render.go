package api

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

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
	if st.Warning != "" {
		fmt.Fprintf(&b, "  * WARNING: %s\n", st.Warning)
	}
	fmt.Fprintf(&b, "  * Spec version: %d\n", st.SpecVersion)
	fmt.Fprintf(&b, "  * %d nodes configured, %d virtual services\n", st.NodesConfigured, len(st.Services))
	noQuorum := st.Policy.NoQuorum
	if noQuorum == "" {
		noQuorum = "stop"
	}
	fmt.Fprintf(&b, "  * no-quorum-policy: %s, fencing: %s\n", noQuorum, onOff(st.Policy.Fencing))

	fmt.Fprintf(&b, "\nNode List:\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, n := range st.Nodes {
		dp := ""
		if n.Dataplane != "" {
			dp = "dataplane " + n.Dataplane
		}
		fmt.Fprintf(tw, "  * %s\t%s\t%s\t%s\t%s\n", n.Name, n.Address, capitalize(n.Status), n.Role, dp)
	}
	tw.Flush()

	fmt.Fprintf(&b, "\nVirtual IPs:\n")
	if len(st.VIPs) == 0 {
		fmt.Fprintf(&b, "  (none)\n")
	}
	for _, v := range st.VIPs {
		holder := v.HeldBy
		if holder == "" {
			holder = "nobody (no DC)"
		}
		iface := ""
		if v.Interface != "" {
			iface = " on " + v.Interface
		}
		fmt.Fprintf(&b, "  * %s%s: held by %s\n", v.Address, iface, holder)
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
			fmt.Fprintf(tw, "    -> %s\t%s\t%d\t%s\t%s\n", hostPort(rs.Address, rs.Port), forwardName(s.Forwarding), rs.Weight, rs.Node, healthText(rs))
		}
		if s.Fallback != "" {
			fmt.Fprintf(tw, "    fallback %s\t\t\t\t\n", s.Fallback)
		}
	}
	tw.Flush()
	_, err := io.WriteString(w, b.String())
	return err
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
