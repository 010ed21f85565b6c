package spec

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"
)

// The resources section of the services file, in the order they start:
//
//	resources:
//	  - name: www-data
//	    agent: ocf:heartbeat:Filesystem     # OCF_ROOT/resource.d/heartbeat/Filesystem
//	    params: {device: /dev/drbd0, directory: /var/www, fstype: ext4}
//	    start_timeout: 60s                  # each action's timeout; default 20s
//	    stop_timeout: 60s
//	    monitor_timeout: 20s
//	    monitor_interval: 20s               # default 10s; 0: never
//	  - name: apache
//	    command: [/etc/raftlb/hooks/apache] # called with start, stop or monitor last

type resourceEntry struct {
	Name            at[string]            `yaml:"name"`
	Agent           at[string]            `yaml:"agent"`
	Params          at[map[string]string] `yaml:"params"`
	Command         at[[]string]          `yaml:"command"`
	StartTimeout    at[string]            `yaml:"start_timeout"`
	StopTimeout     at[string]            `yaml:"stop_timeout"`
	MonitorTimeout  at[string]            `yaml:"monitor_timeout"`
	MonitorInterval at[string]            `yaml:"monitor_interval"`
}

// resources turns the section into the spec's Resources, filling in
// defaults.
func (p *parser) resources(es []resourceEntry) []Resource {
	var out []Resource
	for i, e := range es {
		path := fmt.Sprintf("resources[%d]", i)
		p.at(path, firstLine(e.Name.Line, e.Agent.Line, e.Command.Line))
		p.at(path+".name", e.Name.Line)
		p.at(path+".agent", e.Agent.Line)
		p.at(path+".params", e.Params.Line)
		for _, k := range slices.Sorted(maps.Keys(e.Params.Val)) {
			p.at(path+".params."+k, e.Params.Line)
		}
		p.at(path+".command", e.Command.Line)
		for j := range e.Command.Val {
			p.at(fmt.Sprintf("%s.command[%d]", path, j), e.Command.Line)
		}
		r := Resource{Name: e.Name.Val, Agent: e.Agent.Val, Params: e.Params.Val, Command: e.Command.Val}
		r.StartTimeout = p.durationOr(path+".start_timeout", e.StartTimeout, DefaultResourceTimeout)
		r.StopTimeout = p.durationOr(path+".stop_timeout", e.StopTimeout, DefaultResourceTimeout)
		r.MonitorTimeout = p.durationOr(path+".monitor_timeout", e.MonitorTimeout, DefaultResourceTimeout)
		r.MonitorInterval = p.durationOr(path+".monitor_interval", e.MonitorInterval, DefaultResourceMonitorInterval)
		out = append(out, r)
	}
	return out
}

// durationOr reads a duration, def when the key is absent.
func (p *parser) durationOr(path string, a at[string], def time.Duration) time.Duration {
	p.at(path, a.Line)
	if a.Line == 0 {
		return def
	}
	d, err := parseDuration(a)
	p.check(path, a.Line, err)
	return d
}

type resourceOut struct {
	Name            string            `yaml:"name"`
	Agent           string            `yaml:"agent,omitempty"`
	Params          map[string]string `yaml:"params,omitempty"`
	Command         []string          `yaml:"command,omitempty,flow"`
	StartTimeout    string            `yaml:"start_timeout"`
	StopTimeout     string            `yaml:"stop_timeout"`
	MonitorTimeout  string            `yaml:"monitor_timeout"`
	MonitorInterval string            `yaml:"monitor_interval"`
}

func formatResources(rs []Resource) []resourceOut {
	var out []resourceOut
	for _, r := range rs {
		out = append(out, resourceOut{
			Name: r.Name, Agent: r.Agent, Params: r.Params, Command: r.Command,
			StartTimeout: r.StartTimeout.String(), StopTimeout: r.StopTimeout.String(),
			MonitorTimeout: r.MonitorTimeout.String(), MonitorInterval: r.MonitorInterval.String(),
		})
	}
	return out
}

// resourcesDiff lists the resources added, removed or changed, and a
// change of their order (which is the order they start in).
func resourcesDiff(o, n []Resource) []Change {
	var out []Change
	old := map[string]Resource{}
	var oldOrder, newOrder []string
	for _, r := range o {
		old[r.Name] = r
		oldOrder = append(oldOrder, r.Name)
	}
	seen := map[string]bool{}
	for _, r := range n {
		seen[r.Name] = true
		switch p, ok := old[r.Name]; {
		case !ok:
			out = append(out, Change{Op: Added, What: "resource", Name: r.Name, Detail: r.Kind()})
		case !reflect.DeepEqual(p, r):
			out = append(out, Change{Op: Changed, What: "resource", Name: r.Name, Detail: r.Kind()})
		}
	}
	for _, r := range o {
		if !seen[r.Name] {
			out = append(out, Change{Op: Removed, What: "resource", Name: r.Name})
		} else {
			newOrder = append(newOrder, r.Name)
		}
	}
	var kept []string
	for _, r := range n {
		if _, ok := old[r.Name]; ok {
			kept = append(kept, r.Name)
		}
	}
	if !slices.Equal(kept, newOrder) {
		out = append(out, Change{Op: Changed, What: "resource order", Detail: strings.Join(oldOrder, ", ") + " → " + strings.Join(resourceNamesOf(n), ", ")})
	}
	return out
}

func resourceNamesOf(rs []Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name
	}
	return out
}
