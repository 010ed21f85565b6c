package spec

import (
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Resource is one entry of the spec's resources: what must run on the DC
// and nowhere else, and move with it — Heartbeat's haresources line,
// Pacemaker's resource group. The DC starts them in spec order once it
// holds every VIP, and stops them in reverse when it lets go.
//
// An entry is either an OCF resource agent, run unchanged as Pacemaker runs
// it (OCF_ROOT/resource.d/PROVIDER/TYPE ACTION with the params as
// OCF_RESKEY_*), or a command of the operator's own, called with the
// action as its last argument. Both answer in OCF exit codes: 0 success
// (for monitor: running), 7 not running; anything else, or a timeout, is a
// failure.
type Resource struct {
	Name string `json:"name"`
	// Agent is "ocf:PROVIDER:TYPE" (ocf:heartbeat:Filesystem); empty for
	// a Command.
	Agent string `json:"agent,omitempty"`
	// Params are the agent's parameters (OCF_RESKEY_NAME=VALUE). They are
	// replicated and shown: no secrets here.
	Params  map[string]string `json:"params,omitempty"`
	Command []string          `json:"command,omitempty"`
	// Timeouts of each action; a run past its timeout is killed, with its
	// whole process group, and is a failure.
	StartTimeout   time.Duration `json:"start_timeout"`
	StopTimeout    time.Duration `json:"stop_timeout"`
	MonitorTimeout time.Duration `json:"monitor_timeout"`
	// MonitorInterval is how often the DC runs monitor on a started
	// resource; 0 never.
	MonitorInterval time.Duration `json:"monitor_interval"`
}

// OCF is the provider and type of an OCF agent ("heartbeat",
// "Filesystem"); ok is false for a command.
func (r Resource) OCF() (provider, typ string, ok bool) {
	rest, isOCF := strings.CutPrefix(r.Agent, "ocf:")
	if !isOCF {
		return "", "", false
	}
	provider, typ, ok = strings.Cut(rest, ":")
	return provider, typ, ok
}

// Kind says what the resource runs, for status and logs.
func (r Resource) Kind() string {
	if r.Agent != "" {
		return r.Agent
	}
	if len(r.Command) > 0 {
		return r.Command[0]
	}
	return "?"
}

// The limits of a resource's actions.
const (
	DefaultResourceTimeout         = 20 * time.Second // Pacemaker's default operation timeout
	DefaultResourceMonitorInterval = 10 * time.Second
	MinResourceTimeout             = time.Second
	MaxResourceTimeout             = 10 * time.Minute
	MinResourceMonitorInterval     = time.Second
	MaxResources                   = 32
	maxResourceParamValue          = 1024
)

var (
	ocfAgent     = regexp.MustCompile(`^ocf:[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}:[A-Za-z0-9_-][A-Za-z0-9._-]{0,62}$`)
	ocfParamName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,63}$`)
)

func (v *validator) resources(s Spec) {
	if len(s.Resources) == 0 {
		return
	}
	if len(s.Resources) > MaxResources {
		v.addf("resources", "%d resources: at most %d", len(s.Resources), MaxResources)
	}
	if len(s.VIPs) == 0 {
		v.addf("resources", "resources move with the VIPs' holder: a spec with resources needs a VIP")
	}
	if s.Policy.Takeover != TakeoverFence {
		v.addf("resources", "resources need policy takeover: fence: a DC that died, froze or was cut off stops its resources only if its agent still runs, and only fencing makes sure of that before they start on another node (as Pacemaker, which starts nothing without STONITH)")
	}
	names := map[string]int{}
	for i, r := range s.Resources {
		p := fmt.Sprintf("resources[%d]", i)
		v.uniqueName(p+".name", "resources", i, r.Name, names)
		switch {
		case r.Agent != "" && len(r.Command) > 0:
			v.addf(p, "either agent (an OCF resource agent) or command, not both")
		case r.Agent != "":
			if !ocfAgent.MatchString(r.Agent) || strings.Contains(r.Agent, "..") {
				v.addf(p+".agent", "%q: want ocf:PROVIDER:TYPE, e.g. ocf:heartbeat:Filesystem", r.Agent)
			}
			for _, k := range slices.Sorted(maps.Keys(r.Params)) {
				switch val := r.Params[k]; {
				case !ocfParamName.MatchString(k):
					v.addf(p+".params."+k, "not an OCF parameter name (a letter, then letters, digits or '_')")
				case len(val) > maxResourceParamValue:
					v.addf(p+".params."+k, "longer than %d bytes", maxResourceParamValue)
				case !paramText(val):
					v.addf(p+".params."+k, "must be text without control characters")
				}
			}
		case len(r.Command) > 0:
			if len(r.Params) > 0 {
				v.addf(p+".params", "params are for OCF agents; a command gets its arguments in command")
			}
			switch c := r.Command[0]; {
			case !filepath.IsAbs(c):
				v.addf(p+".command[0]", "%q is not an absolute path", c)
			case filepath.Clean(c) != c:
				v.addf(p+".command[0]", "%q is not a clean path", c)
			}
			for j, a := range r.Command {
				if len(a) > maxResourceParamValue || !paramText(a) {
					v.addf(fmt.Sprintf("%s.command[%d]", p, j), "must be text without control characters, at most %d bytes", maxResourceParamValue)
				}
			}
		default:
			v.addf(p, "needs agent (ocf:PROVIDER:TYPE) or command (an absolute path and its arguments)")
		}
		for _, t := range []struct {
			name string
			d    time.Duration
		}{{"start_timeout", r.StartTimeout}, {"stop_timeout", r.StopTimeout}, {"monitor_timeout", r.MonitorTimeout}} {
			if t.d < MinResourceTimeout || t.d > MaxResourceTimeout {
				v.addf(p+"."+t.name, "%s: want %s to %s", t.d, MinResourceTimeout, MaxResourceTimeout)
			}
		}
		if r.MonitorInterval != 0 && (r.MonitorInterval < MinResourceMonitorInterval || r.MonitorInterval > time.Hour) {
			v.addf(p+".monitor_interval", "%s: want 0 (never) or %s to 1h", r.MonitorInterval, MinResourceMonitorInterval)
		}
	}
}

// paramText is valid UTF-8 without control characters (spaces allowed).
func paramText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool {
		return unicode.IsControl(r) || r == utf8.RuneError
	})
}

// cloneResources deep-copies rs.
func cloneResources(rs []Resource) []Resource {
	if rs == nil {
		return nil
	}
	out := make([]Resource, len(rs))
	for i, r := range rs {
		r.Params = maps.Clone(r.Params)
		r.Command = slices.Clone(r.Command)
		out[i] = r
	}
	return out
}

// normalizedResources is rs with empty collections nil.
func normalizedResources(rs []Resource) []Resource {
	out := nilIfEmpty(cloneResources(rs))
	for i := range out {
		if len(out[i].Params) == 0 {
			out[i].Params = nil
		}
		out[i].Command = nilIfEmpty(out[i].Command)
	}
	return out
}
