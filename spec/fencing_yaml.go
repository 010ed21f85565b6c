package spec

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// The fencing section of the services file:
//
//	fencing:
//	  devices:
//	    - name: ipmi-m30
//	      agent: fence_ipmilan          # on PATH, or an absolute path
//	      params:                       # the agent's own options
//	        ip: 10.0.0.30
//	        username: admin
//	        password: {file: /etc/raftlb/secrets/ipmi-m30}   # secrets: a file on each node
//	        lanplus: "1"
//	      hosts: [m30]                  # or {m30: "1", m40: "2"}: node → plug
//	      action: reboot                # reboot (default) | off
//	      timeout: 60s                  # default 60s
//	      retries: 2                    # default 2
//	      delay: 0s-5s                  # random delay before fencing, against fence races
//	      monitor_interval: 60s         # run the agent's monitor this often; default 0: never
//	  levels:                           # optional: per node, level 1 all must succeed, else level 2, …
//	    m30: [[ipmi-m30], [pdu-a, pdu-b]]

type fencingEntry struct {
	Devices []fenceDeviceEntry        `yaml:"devices"`
	Levels  at[map[string][][]string] `yaml:"levels"`
}

type fenceDeviceEntry struct {
	Name            at[string]  `yaml:"name"`
	Agent           at[string]  `yaml:"agent"`
	Params          paramsEntry `yaml:"params"`
	Hosts           hostsEntry  `yaml:"hosts"`
	Action          at[string]  `yaml:"action"`
	Timeout         at[string]  `yaml:"timeout"`
	Retries         at[int]     `yaml:"retries"`
	Delay           at[string]  `yaml:"delay"`
	MonitorInterval at[string]  `yaml:"monitor_interval"`
}

// paramsEntry is "params:": option → a scalar, or {file: PATH}.
type paramsEntry struct {
	Line  int
	Vals  map[string]FenceParam
	Lines map[string]int
}

func (p *paramsEntry) UnmarshalYAML(n *yaml.Node) error {
	p.Line = n.Line
	if n.Kind != yaml.MappingNode {
		return typeError("line %d: params must be a mapping of option: value", n.Line)
	}
	p.Vals, p.Lines = map[string]FenceParam{}, map[string]int{}
	var msgs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolveAlias(n.Content[i+1])
		p.Lines[k.Value] = k.Line
		switch v.Kind {
		case yaml.ScalarNode:
			p.Vals[k.Value] = FenceParam{Value: v.Value}
		case yaml.MappingNode:
			if err := knownKeys(v, "secret parameter", "file"); err != nil {
				msgs = append(msgs, err.Errors...)
				continue
			}
			var fp struct {
				File string `yaml:"file"`
			}
			if err := v.Decode(&fp); err != nil {
				msgs = append(msgs, fmt.Sprintf("line %d: %s: %v", v.Line, k.Value, err))
				continue
			}
			p.Vals[k.Value] = FenceParam{File: fp.File}
		default:
			msgs = append(msgs, fmt.Sprintf("line %d: %s must be a value or {file: PATH}", v.Line, k.Value))
		}
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	return nil
}

// hostsEntry is "hosts:": a list of nodes, or a mapping node → plug.
type hostsEntry struct {
	Line int
	Vals map[string]string
}

func (h *hostsEntry) UnmarshalYAML(n *yaml.Node) error {
	h.Line = n.Line
	h.Vals = map[string]string{}
	switch n.Kind {
	case yaml.SequenceNode:
		for _, item := range n.Content {
			item = resolveAlias(item)
			if item.Kind != yaml.ScalarNode {
				return typeError("line %d: hosts lists node names", item.Line)
			}
			h.Vals[item.Value] = ""
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], resolveAlias(n.Content[i+1])
			if v.Kind != yaml.ScalarNode {
				return typeError("line %d: hosts maps a node to its plug, a value", v.Line)
			}
			h.Vals[k.Value] = v.Value
		}
	default:
		return typeError("line %d: hosts must be a list of nodes or a mapping node: plug", n.Line)
	}
	return nil
}

// fencing turns the section into the spec's Fencing, filling in defaults.
func (p *parser) fencing(e *fencingEntry) Fencing {
	var f Fencing
	if e == nil {
		return f
	}
	for i, d := range e.Devices {
		path := fmt.Sprintf("fencing.devices[%d]", i)
		p.at(path, firstLine(d.Name.Line, d.Agent.Line, d.Hosts.Line))
		dev := FenceDevice{
			Name: d.Name.Val, Agent: d.Agent.Val, Params: d.Params.Vals, Hosts: d.Hosts.Vals,
			Action: orDefault(d.Action, DefaultFenceAction), Timeout: DefaultFenceTimeout, Retries: DefaultFenceRetries,
		}
		p.at(path+".name", d.Name.Line)
		p.at(path+".agent", d.Agent.Line)
		p.at(path+".params", d.Params.Line)
		for k, l := range d.Params.Lines {
			p.at(path+".params."+k, l)
		}
		p.at(path+".hosts", d.Hosts.Line)
		p.at(path+".action", d.Action.Line)
		if d.Timeout.Line > 0 {
			var err error
			dev.Timeout, err = parseDuration(d.Timeout)
			p.check(path+".timeout", d.Timeout.Line, err)
		}
		if d.Retries.Line > 0 {
			dev.Retries = d.Retries.Val
		}
		p.at(path+".retries", d.Retries.Line)
		var err error
		dev.DelayMin, dev.DelayMax, err = parseDelay(d.Delay)
		p.check(path+".delay", d.Delay.Line, err)
		dev.MonitorInterval, err = parseDuration(d.MonitorInterval)
		p.check(path+".monitor_interval", d.MonitorInterval.Line, err)
		f.Devices = append(f.Devices, dev)
	}
	if e.Levels.Line > 0 {
		f.Levels = e.Levels.Val
		p.at("fencing.levels", e.Levels.Line)
		for _, n := range slices.Sorted(maps.Keys(f.Levels)) {
			p.at("fencing.levels."+n, e.Levels.Line)
		}
	}
	return f
}

// parseDelay reads "5s" (a random delay of 0 to 5 s) or "1s-5s".
func parseDelay(a at[string]) (lo, hi time.Duration, err error) {
	if a.Line == 0 {
		return 0, 0, nil
	}
	from, to, ranged := strings.Cut(a.Val, "-")
	if !ranged {
		from, to = "0s", a.Val
	}
	if lo, err = parseDuration(at[string]{Val: strings.TrimSpace(from), Line: a.Line}); err != nil {
		return 0, 0, err
	}
	if hi, err = parseDuration(at[string]{Val: strings.TrimSpace(to), Line: a.Line}); err != nil {
		return 0, 0, err
	}
	return lo, hi, nil
}
