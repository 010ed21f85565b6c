package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strconv"

	"gopkg.in/yaml.v3"
)

// parseConfigFile reads an agent config file: a YAML mapping whose keys are
// the agent's flag names (data-dir, bind, join, ...) and whose values are
// scalars or, for repeatable flags, lists. Knowing the flag set lets it
// reject unknown settings with a clear message.
func parseConfigFile(data []byte, fs *flag.FlagSet) (map[string][]string, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return map[string][]string{}, nil
		}
		return nil, fmt.Errorf("config file: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("config file: must hold exactly one YAML document")
	}
	if len(doc.Content) == 0 {
		return map[string][]string{}, nil
	}
	root := doc.Content[0]
	if isNull(root) {
		// "---" alone, or every setting commented out.
		return map[string][]string{}, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file line %d: want a mapping of setting: value", root.Line)
	}
	out := map[string][]string{}
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config file line %d: setting names must be plain words", k.Line)
		}
		name := k.Value
		if name == "config" || fs.Lookup(name) == nil {
			return nil, fmt.Errorf("config file line %d: unknown setting %q (settings are the agent's flag names, e.g. data-dir, bind, join)", k.Line, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("config file line %d: %q is set twice", k.Line, name)
		}
		seen[name] = true
		var vals []string
		switch {
		case isNull(v):
			// "bind:" with no value counts as absent, as in the
			// services file, rather than setting an empty value.
			continue
		case v.Kind == yaml.ScalarNode:
			vals = []string{v.Value}
		case v.Kind == yaml.SequenceNode:
			_, repeatable := fs.Lookup(name).Value.(*stringList)
			_, argvs := fs.Lookup(name).Value.(*argvList)
			if !repeatable && !argvs {
				return nil, fmt.Errorf("config file line %d: %q takes one value, not a list", v.Line, name)
			}
			for _, item := range v.Content {
				switch {
				case item.Kind == yaml.ScalarNode:
					vals = append(vals, item.Value)
				case argvs && item.Kind == yaml.SequenceNode:
					// A program with its arguments: the flag's JSON form.
					argv, err := scalars(item, name)
					if err != nil {
						return nil, err
					}
					b, err := json.Marshal(argv)
					if err != nil {
						return nil, fmt.Errorf("config file line %d: %q: %w", item.Line, name, err)
					}
					vals = append(vals, string(b))
				case argvs:
					return nil, fmt.Errorf("config file line %d: %q: list items must be a program's path or a list of the program and its arguments", item.Line, name)
				default:
					return nil, fmt.Errorf("config file line %d: %q: list items must be plain values", item.Line, name)
				}
			}
		default:
			return nil, fmt.Errorf("config file line %d: %q: want a value or a list of values", v.Line, name)
		}
		out[name] = vals
	}
	return out, nil
}

// scalars reads a YAML list of plain values.
func scalars(n *yaml.Node, name string) ([]string, error) {
	out := make([]string, 0, len(n.Content))
	for _, item := range n.Content {
		if item.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf("config file line %d: %q: a program's arguments must be plain values", item.Line, name)
		}
		out = append(out, item.Value)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("config file line %d: %q: an empty list: want the program first", n.Line, name)
	}
	return out, nil
}

// isNull reports a YAML null: an empty value, "~" or "null".
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// applyConfigFile sets every flag from the file that the command line did
// not set: flags override the file.
func applyConfigFile(fs *flag.FlagSet, settings map[string][]string) error {
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	names := make([]string, 0, len(settings))
	for name := range settings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if explicit[name] {
			continue
		}
		for _, v := range settings[name] {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("config file: %s: %s: %w", name, strconv.Quote(v), err)
			}
		}
	}
	return nil
}
