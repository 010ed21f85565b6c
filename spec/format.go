package spec

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"gopkg.in/yaml.v3"
)

// FormatServices writes spec as a services file that ParseServices takes
// back unchanged (`raftlb spec show`, as crm configure show). Every default
// is written out, as the replicated spec holds it; the version is a
// comment.

type fileOut struct {
	VIPs      []vipOut      `yaml:"vips"`
	Policy    policyOut     `yaml:"policy"`
	Fencing   *fencingOut   `yaml:"fencing,omitempty"`
	Services  []serviceOut  `yaml:"services"`
	Resources []resourceOut `yaml:"resources,omitempty"`
}

type vipOut struct {
	Address   string `yaml:"address"`
	Interface string `yaml:"interface,omitempty"`
}

type policyOut struct {
	NoQuorum    string `yaml:"no_quorum"`
	Takeover    string `yaml:"takeover"`
	PreferredDC string `yaml:"preferred_dc,omitempty"`
	Preempt     bool   `yaml:"preempt,omitempty"`
}

type serviceOut struct {
	Name               string          `yaml:"name,omitempty"`
	VIP                string          `yaml:"vip"`
	Port               uint16          `yaml:"port"`
	Protocol           string          `yaml:"protocol"`
	Scheduler          string          `yaml:"scheduler"`
	Forwarding         string          `yaml:"forwarding"`
	Persistence        string          `yaml:"persistence,omitempty"`
	PersistenceNetmask string          `yaml:"persistence_netmask,omitempty"`
	RealServers        any             `yaml:"real_servers"`
	NodePort           uint16          `yaml:"node_port,omitempty"`
	NodeWeight         *int            `yaml:"node_weight,omitempty"`
	Fallback           string          `yaml:"fallback,omitempty"`
	HealthCheck        *healthCheckOut `yaml:"health_check,omitempty"`
}

type realServerOut struct {
	Address string `yaml:"address"`
	Port    uint16 `yaml:"port"`
	Weight  int    `yaml:"weight"`
}

type healthCheckOut struct {
	Type         string   `yaml:"type"`
	Interval     string   `yaml:"interval"`
	Timeout      string   `yaml:"timeout"`
	Rise         int      `yaml:"rise"`
	Fall         int      `yaml:"fall"`
	OnFail       string   `yaml:"on_fail"`
	Path         string   `yaml:"path,omitempty"`
	ExpectStatus []int    `yaml:"expect_status,omitempty,flow"`
	BodyRegex    string   `yaml:"body_regex,omitempty"`
	DigestMD5    string   `yaml:"digest_md5,omitempty"`
	DigestSHA256 string   `yaml:"digest_sha256,omitempty"`
	ServerName   string   `yaml:"server_name,omitempty"`
	VerifyTLS    bool     `yaml:"verify_tls,omitempty"`
	Command      []string `yaml:"command,omitempty,flow"`
}

type fencingOut struct {
	Devices []fenceDeviceOut      `yaml:"devices,omitempty"`
	Levels  map[string][][]string `yaml:"levels,omitempty"`
}

type fenceDeviceOut struct {
	Name            string         `yaml:"name"`
	Agent           string         `yaml:"agent"`
	Params          map[string]any `yaml:"params,omitempty"`
	Hosts           map[string]any `yaml:"hosts"`
	Action          string         `yaml:"action"`
	Timeout         string         `yaml:"timeout"`
	Retries         int            `yaml:"retries"`
	Delay           string         `yaml:"delay,omitempty"`
	MonitorInterval string         `yaml:"monitor_interval,omitempty"`
}

// FormatServices renders spec as a services file.
func FormatServices(spec Spec) ([]byte, error) {
	f := fileOut{VIPs: []vipOut{}, Services: []serviceOut{}, Policy: policyOut{
		NoQuorum: spec.Policy.NoQuorum, Takeover: spec.Policy.TakeoverPolicy(), PreferredDC: spec.Policy.PreferredDC, Preempt: spec.Policy.Preempt,
	}}
	for _, v := range spec.VIPs {
		f.VIPs = append(f.VIPs, vipOut{Address: v.Address.String(), Interface: v.Interface})
	}
	if fe := formatFencing(spec.Fencing); fe != nil {
		f.Fencing = fe
	}
	for _, svc := range spec.Services {
		f.Services = append(f.Services, formatService(svc))
	}
	f.Resources = formatResources(spec.Resources)
	var b bytes.Buffer
	fmt.Fprintf(&b, "# raftlb spec version %d: raftlb apply -f takes this file back unchanged\n", spec.Version)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("format the spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("format the spec: %w", err)
	}
	return b.Bytes(), nil
}

func formatService(svc Service) serviceOut {
	out := serviceOut{
		Name: svc.Name, VIP: svc.VIP.String(), Port: svc.Port, Protocol: svc.Protocol,
		Scheduler: svc.Scheduler, Forwarding: svc.Forwarding,
		Persistence: formatDuration(svc.Persistence.Timeout),
	}
	if svc.Persistence.Netmask.IsValid() {
		out.PersistenceNetmask = svc.Persistence.Netmask.String()
	}
	if rs := svc.RealServers; rs.AllNodes {
		out.RealServers = "all-nodes"
		out.NodePort = rs.NodePort
		out.NodeWeight = &rs.NodeWeight
	} else {
		list := []realServerOut{}
		for _, s := range rs.Servers {
			list = append(list, realServerOut{Address: s.Address.String(), Port: s.Port, Weight: s.Weight})
		}
		out.RealServers = list
	}
	if fb := svc.Fallback; fb != nil {
		out.Fallback = netip.AddrPortFrom(fb.Address, fb.Port).String()
	}
	if hc := svc.HealthCheck; hc != nil {
		out.HealthCheck = &healthCheckOut{
			Type: hc.Type, Interval: hc.Interval.String(), Timeout: hc.Timeout.String(),
			Rise: hc.Rise, Fall: hc.Fall, OnFail: hc.OnFail, Path: hc.Path, ExpectStatus: hc.ExpectStatus,
			BodyRegex: hc.BodyRegex, DigestMD5: hc.DigestMD5, DigestSHA256: hc.DigestSHA256,
			ServerName: hc.ServerName, VerifyTLS: hc.VerifyTLS, Command: hc.Command,
		}
	}
	return out
}

func formatFencing(f Fencing) *fencingOut {
	if len(f.Devices) == 0 && len(f.Levels) == 0 {
		return nil
	}
	out := &fencingOut{Levels: f.Levels}
	for _, d := range f.Devices {
		dev := fenceDeviceOut{
			Name: d.Name, Agent: d.Agent, Action: d.Action, Timeout: d.Timeout.String(), Retries: d.Retries,
			MonitorInterval: formatDuration(d.MonitorInterval), Hosts: map[string]any{},
		}
		if d.DelayMax > 0 {
			dev.Delay = d.DelayMin.String() + "-" + d.DelayMax.String()
		}
		for _, k := range slices.Sorted(maps.Keys(d.Hosts)) {
			dev.Hosts[k] = d.Hosts[k]
		}
		if len(d.Params) > 0 {
			dev.Params = map[string]any{}
			for k, p := range d.Params {
				if p.File != "" {
					dev.Params[k] = map[string]string{"file": p.File}
				} else {
					dev.Params[k] = p.Value
				}
			}
		}
		out.Devices = append(out.Devices, dev)
	}
	return out
}

// formatDuration writes a duration the parser reads back; zero is left
// out (the default).
func formatDuration(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}
