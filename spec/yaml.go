package spec

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// The types in this file mirror the services file one to one. They exist so
// yaml.v3 can reject unknown fields and wrong types (with line numbers)
// while the parser, not yaml, turns strings into addresses and durations and
// fills in defaults, and can point each later problem at a line.

type servicesFile struct {
	VIPs      []vipEntry      `yaml:"vips"`
	Policy    *policyEntry    `yaml:"policy"`
	Fencing   *fencingEntry   `yaml:"fencing"`
	Services  []serviceEntry  `yaml:"services"`
	Resources []resourceEntry `yaml:"resources"`
}

type vipEntry struct {
	Address   at[string] `yaml:"address"`
	Interface at[string] `yaml:"interface"`
}

type policyEntry struct {
	NoQuorum    at[string] `yaml:"no_quorum"`
	Takeover    at[string] `yaml:"takeover"`
	Fencing     at[bool]   `yaml:"fencing"`
	PreferredDC at[string] `yaml:"preferred_dc"`
	Preempt     at[bool]   `yaml:"preempt"`
}

type serviceEntry struct {
	Name               at[string]        `yaml:"name"`
	VIP                at[string]        `yaml:"vip"`
	Port               at[int]           `yaml:"port"`
	Protocol           at[string]        `yaml:"protocol"`
	Scheduler          at[string]        `yaml:"scheduler"`
	Forwarding         at[string]        `yaml:"forwarding"`
	Persistence        at[string]        `yaml:"persistence"`
	PersistenceNetmask at[string]        `yaml:"persistence_netmask"`
	RealServers        realServersEntry  `yaml:"real_servers"`
	NodePort           at[int]           `yaml:"node_port"`
	NodeWeight         at[int]           `yaml:"node_weight"`
	Fallback           at[string]        `yaml:"fallback"`
	HealthCheck        *healthCheckEntry `yaml:"health_check"`
}

type healthCheckEntry struct {
	Type         at[string]   `yaml:"type"`
	Interval     at[string]   `yaml:"interval"`
	Timeout      at[string]   `yaml:"timeout"`
	Rise         at[int]      `yaml:"rise"`
	Fall         at[int]      `yaml:"fall"`
	OnFail       at[string]   `yaml:"on_fail"`
	Path         at[string]   `yaml:"path"`
	ExpectStatus at[[]int]    `yaml:"expect_status"`
	BodyRegex    at[string]   `yaml:"body_regex"`
	DigestMD5    at[string]   `yaml:"digest_md5"`
	DigestSHA256 at[string]   `yaml:"digest_sha256"`
	ServerName   at[string]   `yaml:"server_name"`
	VerifyTLS    at[bool]     `yaml:"verify_tls"`
	Command      at[[]string] `yaml:"command"`
}

type realServerEntry struct {
	Address at[string] `yaml:"address"`
	Port    at[int]    `yaml:"port"`
	Weight  at[int]    `yaml:"weight"`
}

// at is a scalar, or a list of scalars, from the services file with the
// line it was on. Line 0 means the key was absent (or null). T must not be a
// struct: yaml.Node.Decode, used here, does not reject unknown fields.
type at[T any] struct {
	Val  T
	Line int
}

func (a *at[T]) UnmarshalYAML(n *yaml.Node) error {
	a.Line = n.Line
	if err := wholeNumbers(n, &a.Val); err != nil {
		return err
	}
	return n.Decode(&a.Val)
}

// wholeNumbers refuses a float where an integer belongs; yaml.v3 would
// silently truncate "weight: 1.5" to 1.
func wholeNumbers(n *yaml.Node, v any) error {
	var nodes []*yaml.Node
	switch v.(type) {
	case *int:
		nodes = []*yaml.Node{n}
	case *[]int:
		if n.Kind == yaml.SequenceNode {
			nodes = n.Content
		}
	}
	for _, m := range nodes {
		m = resolveAlias(m)
		if m.Kind == yaml.ScalarNode && m.ShortTag() == "!!float" {
			return typeError("line %d: %s is not a whole number", m.Line, m.Value)
		}
	}
	return nil
}

// realServersEntry is "real_servers:", which is either the word all-nodes
// or a list of servers.
type realServersEntry struct {
	Line int
	// List is nil when the key is absent or says all-nodes.
	List []realServerEntry
	// IsList tells an empty list, an error, from an absent key.
	IsList bool
}

func (r *realServersEntry) UnmarshalYAML(n *yaml.Node) error {
	r.Line = n.Line
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Value != "all-nodes" {
			return typeError("line %d: real_servers must be all-nodes or a list of servers, not %q", n.Line, n.Value)
		}
		return nil
	case yaml.SequenceNode:
	default:
		return typeError("line %d: real_servers must be all-nodes or a list of servers", n.Line)
	}
	r.IsList = true
	var msgs []string
	for _, item := range n.Content {
		item = resolveAlias(item)
		var e realServerEntry
		if err := knownKeys(item, "real_servers entry", "address", "port", "weight"); err != nil {
			msgs = append(msgs, err.Errors...)
		} else if err := item.Decode(&e); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return err
			}
			msgs = append(msgs, te.Errors...)
		}
		r.List = append(r.List, e)
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	return nil
}

// knownKeys does for a mapping decoded with Node.Decode what
// Decoder.KnownFields does for the rest of the file.
func knownKeys(n *yaml.Node, what string, allowed ...string) *yaml.TypeError {
	if n.Kind != yaml.MappingNode {
		return typeError("line %d: a %s must be a mapping such as {address: 10.0.0.5, port: 80}", n.Line, what)
	}
	var msgs []string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || !slices.Contains(allowed, k.Value) {
			msgs = append(msgs, fmt.Sprintf("line %d: unknown field %q in a %s", k.Line, k.Value, what))
		}
	}
	if len(msgs) > 0 {
		return &yaml.TypeError{Errors: msgs}
	}
	return nil
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// typeError is the error an unmarshaler returns to have yaml.v3 record a
// problem and go on decoding, so one run reports every bad value.
func typeError(format string, args ...any) *yaml.TypeError {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf(format, args...)}}
}

// yamlError rewrites yaml.v3's messages in the words of the services file:
// "field wieght not found in type spec.serviceEntry" becomes
// `unknown field "wieght" in a service`.
func yamlError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return fmt.Errorf("services file: %w", err)
	}
	names := strings.NewReplacer(
		"spec.servicesFile", "the top level (a mapping with vips, policy, fencing and services)",
		"spec.fencingEntry", "fencing",
		"spec.fenceDeviceEntry", "a fencing device",
		"spec.vipEntry", "a vips entry",
		"spec.policyEntry", "policy",
		"spec.serviceEntry", "a service",
		"spec.healthCheckEntry", "health_check",
		"spec.realServerEntry", "a real_servers entry",
	)
	out := &yaml.TypeError{Errors: make([]string, len(te.Errors))}
	for i, msg := range te.Errors {
		// "line N: field X not found in type T"
		if before, rest, ok := strings.Cut(msg, ": field "); ok {
			if field, typ, ok := strings.Cut(rest, " not found in type "); ok {
				msg = fmt.Sprintf("%s: unknown field %q in %s", before, field, typ)
			}
		}
		out.Errors[i] = names.Replace(msg)
	}
	return fmt.Errorf("services file: %w", out)
}
