package spec

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Fencing is the spec's STONITH section: the devices the DC may use to
// make sure a node is off before it takes the VIP that node held, and per
// node the order to try them in.
type Fencing struct {
	Devices []FenceDevice `json:"devices,omitempty"`
	// Levels maps a node to its fencing topology, as Pacemaker's
	// fencing-topology: every device of level 1 must succeed, or level 2
	// is tried, and so on. A node without levels is fenced by the devices
	// that list it, each a level of its own, in spec order.
	Levels map[string][][]string `json:"levels,omitempty"`
}

// FenceDevice is one fence agent and how to call it. Agents speak the
// ClusterLabs fence-agents protocol (options as key=value lines on stdin).
type FenceDevice struct {
	Name string `json:"name"`
	// Agent is the program: a name found on PATH (fence_ipmilan) or an
	// absolute path.
	Agent string `json:"agent"`
	// Params are the device's own options (ip, username, lanplus, …).
	// A secret is never a value here: it names a file on the DC.
	Params map[string]FenceParam `json:"params,omitempty"`
	// Hosts are the nodes the device fences, each with its plug (the
	// agent's port/plug argument); an empty plug means the node's name.
	Hosts map[string]string `json:"hosts"`
	// Action is what fencing does: reboot (the default) or off.
	Action   string        `json:"action"`
	Timeout  time.Duration `json:"timeout"`
	Retries  int           `json:"retries"`
	DelayMin time.Duration `json:"delay_min,omitempty"`
	DelayMax time.Duration `json:"delay_max,omitempty"`
	// MonitorInterval is how often the DC runs the agent's monitor
	// action, shown in status; 0 never.
	MonitorInterval time.Duration `json:"monitor_interval,omitempty"`
}

// FenceParam is one option of a fence agent: a plain value, or a file the
// DC reads the value from at fence time (a password: never replicated,
// never logged, never shown).
type FenceParam struct {
	Value string `json:"value,omitempty"`
	File  string `json:"file,omitempty"`
}

// The fencing actions and limits.
const (
	FenceReboot = "reboot"
	FenceOff    = "off"

	DefaultFenceAction  = FenceReboot
	DefaultFenceTimeout = 60 * time.Second // Pacemaker's pcmk_reboot_timeout
	DefaultFenceRetries = 2                // Pacemaker's pcmk_reboot_retries
	MaxFenceTimeout     = 10 * time.Minute
	MaxFenceRetries     = 10
	MaxFenceDelay       = 5 * time.Minute
	MinMonitorInterval  = 10 * time.Second
)

var (
	deviceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	paramName  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
)

// uniqueName checks the name of entry i of list: its form, and that no
// earlier entry has it (names holds theirs).
func (v *validator) uniqueName(p, list string, i int, name string, names map[string]int) {
	if !deviceName.MatchString(name) {
		v.addf(p, "%q: want 1-63 letters, digits, '.', '_' or '-'", name)
	} else if j, dup := names[name]; dup {
		v.addf(p, "duplicate of %s[%d]", list, j)
	} else {
		names[name] = i
	}
}

// MaxFenceOutput bounds the output of a fence agent kept per event: the
// fencing package keeps no more, the fence history accepts no more.
const MaxFenceOutput = 2048

// ValidDeviceName reports whether name can name a fence device.
func ValidDeviceName(name string) bool { return deviceName.MatchString(name) }

// reservedParam are the options raftlb itself passes to every agent.
func reservedParam(k string) bool {
	switch k {
	case "action", "nodename", "plug", "port", "port_as_ip":
		return true
	}
	return false
}

// secretParam is an option whose value is a secret: a password, a
// community string, a private key's passphrase. It may only name a file.
func secretParam(k string) bool {
	if strings.HasSuffix(k, "_script") {
		return false // a program that prints the secret (passwd_script)
	}
	for _, s := range []string{"passw", "secret", "community", "passphrase", "token"} {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}

// DangerousFenceParam is an option with which a spec could make a fence
// agent (run as root on the DC) run or write anything: a program to run
// for the password (*_script, through a shell), a binary to use (*_path),
// ssh options (ProxyCommand), a debug file to write, an environment file
// to source through a shell (openrc). A new spec may not set them, and the
// DC does not pass them from an older one.
func DangerousFenceParam(k string) bool {
	switch k {
	case "ssh_options", "debug", "debug_file", "openrc":
		return true
	}
	return strings.HasSuffix(k, "_script") || strings.HasSuffix(k, "_path")
}

func (v *validator) fencing(f Fencing) {
	names := map[string]int{}
	for i, d := range f.Devices {
		p := fmt.Sprintf("fencing.devices[%d]", i)
		v.uniqueName(p+".name", "fencing.devices", i, d.Name, names)
		switch {
		case d.Agent == "":
			v.addf(p+".agent", "required: a fence agent's name on PATH (fence_ipmilan) or its absolute path")
		case strings.ContainsRune(d.Agent, '/') && !filepath.IsAbs(d.Agent):
			v.addf(p+".agent", "%q is a relative path: give a name found on PATH or an absolute path", d.Agent)
		case filepath.IsAbs(d.Agent) && filepath.Clean(d.Agent) != d.Agent:
			v.addf(p+".agent", "%q is not a clean path", d.Agent)
		case !printable(d.Agent):
			v.addf(p+".agent", "must be printable without spaces")
		}
		for _, k := range slices.Sorted(maps.Keys(d.Params)) {
			pp := p + ".params." + k
			val := d.Params[k]
			switch {
			case !paramName.MatchString(k):
				v.addf(pp, "not a fence agent option name (lower case letters, digits, '_')")
			case reservedParam(k):
				v.addf(pp, "raftlb sets %s itself", k)
			case v.proposal && DangerousFenceParam(k):
				v.addf(pp, "%s would let the spec make the fence agent run or write anything as root on the DC: not accepted", k)
			case (val.Value == "") == (val.File == ""):
				v.addf(pp, "give either a value or a file")
			case secretParam(k) && val.Value != "":
				v.addf(pp, "a secret is never written in the spec (it would be replicated and shown): use {file: /path/on/each/node}")
			case val.File != "" && (!filepath.IsAbs(val.File) || filepath.Clean(val.File) != val.File):
				v.addf(pp+".file", "%q: want a clean absolute path", val.File)
			case strings.ContainsAny(val.Value, "\n\r\x00"):
				v.addf(pp, "a value must be one line")
			}
		}
		if len(d.Hosts) == 0 {
			v.addf(p+".hosts", "required: the nodes the device fences")
		}
		for _, n := range slices.Sorted(maps.Keys(d.Hosts)) {
			if err := ValidateNodeName(n); err != nil {
				v.addf(p+".hosts", "%v", err)
			}
			if plug := d.Hosts[n]; strings.ContainsAny(plug, "\n\r\x00") {
				v.addf(p+".hosts."+n, "a plug must be one line")
			}
		}
		switch d.Action {
		case FenceReboot, FenceOff:
		default:
			v.addf(p+".action", "unknown action %q (want reboot or off)", d.Action)
		}
		if d.Timeout < time.Second || d.Timeout > MaxFenceTimeout {
			v.addf(p+".timeout", "%s: want 1s to %s", d.Timeout, MaxFenceTimeout)
		}
		if d.Retries < 0 || d.Retries > MaxFenceRetries {
			v.addf(p+".retries", "%d: want 0 to %d", d.Retries, MaxFenceRetries)
		}
		if d.DelayMin < 0 || d.DelayMax < d.DelayMin || d.DelayMax > MaxFenceDelay {
			v.addf(p+".delay", "%s-%s: want 0 <= min <= max <= %s", d.DelayMin, d.DelayMax, MaxFenceDelay)
		}
		if d.MonitorInterval != 0 && d.MonitorInterval < MinMonitorInterval {
			v.addf(p+".monitor_interval", "%s: want at least %s (or 0: never)", d.MonitorInterval, MinMonitorInterval)
		}
	}
	for _, node := range slices.Sorted(maps.Keys(f.Levels)) {
		p := "fencing.levels." + node
		if err := ValidateNodeName(node); err != nil {
			v.addf(p, "%v", err)
		}
		if len(f.Levels[node]) == 0 {
			v.addf(p, "no level: list at least one")
		}
		for i, level := range f.Levels[node] {
			lp := fmt.Sprintf("%s[%d]", p, i)
			if len(level) == 0 {
				v.addf(lp, "a level names at least one device")
			}
			for _, dev := range level {
				j, ok := names[dev]
				switch {
				case !ok:
					v.addf(lp, "no device %q in fencing.devices", dev)
				case !hasHost(f.Devices[j], node):
					v.addf(lp, "device %q does not fence %s (it is not in its hosts)", dev, node)
				}
			}
		}
	}
}

func hasHost(d FenceDevice, node string) bool {
	_, ok := d.Hosts[node]
	return ok
}

// Plug is what the device calls node: its plug, or its name.
func (d FenceDevice) Plug(node string) string {
	if p := d.Hosts[node]; p != "" {
		return p
	}
	return node
}

// LevelsFor returns node's fencing topology: its levels, or every device
// that lists it as a level of its own, in spec order. Empty means the
// cluster cannot fence node.
func (f Fencing) LevelsFor(node string) [][]FenceDevice {
	byName := map[string]FenceDevice{}
	for _, d := range f.Devices {
		byName[d.Name] = d
	}
	var out [][]FenceDevice
	if levels, ok := f.Levels[node]; ok {
		for _, level := range levels {
			var ds []FenceDevice
			for _, name := range level {
				ds = append(ds, byName[name])
			}
			out = append(out, ds)
		}
		return out
	}
	for _, d := range f.Devices {
		if hasHost(d, node) {
			out = append(out, []FenceDevice{d})
		}
	}
	return out
}

// Clone returns a deep copy of f.
func (f Fencing) Clone() Fencing {
	out := Fencing{}
	if f.Devices != nil {
		out.Devices = make([]FenceDevice, len(f.Devices))
		for i, d := range f.Devices {
			d.Params = maps.Clone(d.Params)
			d.Hosts = maps.Clone(d.Hosts)
			out.Devices[i] = d
		}
	}
	if f.Levels != nil {
		out.Levels = make(map[string][][]string, len(f.Levels))
		for n, levels := range f.Levels {
			c := make([][]string, len(levels))
			for i, l := range levels {
				c[i] = slices.Clone(l)
			}
			out.Levels[n] = c
		}
	}
	return out
}

// normalized is f with empty collections nil.
func (f Fencing) normalized() Fencing {
	out := f.Clone()
	out.Devices = nilIfEmpty(out.Devices)
	for i := range out.Devices {
		if len(out.Devices[i].Params) == 0 {
			out.Devices[i].Params = nil
		}
	}
	if len(out.Levels) == 0 {
		out.Levels = nil
	}
	return out
}

// fencingNodes checks what only the node registry can tell: every node
// the fencing section names is a cluster member.
func (v *validator) fencingNodes(f Fencing, known func(node string) bool) {
	for i, d := range f.Devices {
		for _, n := range slices.Sorted(maps.Keys(d.Hosts)) {
			if !known(n) {
				v.addf(fmt.Sprintf("fencing.devices[%d].hosts", i), "%s is not a node of the cluster", n)
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(f.Levels)) {
		if !known(n) {
			v.addf("fencing.levels."+n, "%s is not a node of the cluster", n)
		}
	}
}
