package spec

import (
	"encoding/json"
	"maps"
	"os"
	"reflect"
	"slices"
	"testing"
)

func FuzzParseServices(f *testing.F) {
	for _, name := range []string{"services.yaml", "fencing.yaml", "resources.yaml"} {
		if example, err := os.ReadFile("../deploy/examples/" + name); err == nil {
			f.Add(example)
		}
	}
	f.Add([]byte(goodFile))
	f.Add([]byte(""))
	f.Add([]byte("vips: [{address: '2001:db8::1'}]\nservices: [{vip: '2001:db8::1', port: 53, protocol: udp}]\n"))
	f.Add([]byte(goodFile + "    real_servers: [{address: 10.0.1.1, port: 80, weight: 3}, {address: 10.0.1.2}]\n" +
		"    health_check: {type: https, path: /ok, expect_status: [200, 204], body_regex: '^ok$', server_name: a.example, verify_tls: true}\n"))
	f.Add([]byte(goodFile + "    health_check: {type: exec, command: [/bin/check, -x], interval: 3, timeout: 2}\n"))
	f.Add([]byte("base: &b {address: 10.0.0.1}\nvips: [*b]\n"))
	f.Add([]byte(goodFile + "    persistence: 20\n    persistence_netmask: 255.255.255.0\n    fallback: 127.0.0.1:80\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		spec, err := ParseServices(data)
		if err != nil {
			if !reflect.DeepEqual(spec, Spec{}) {
				t.Fatalf("ParseServices returned a spec with error %v", err)
			}
			return
		}
		if err := spec.Validate(); err != nil {
			t.Fatalf("parsed spec does not validate: %v\n%+v", err, spec)
		}
		// The spec travels as JSON (commands, snapshots, forwarded
		// requests); it must come back identical.
		b, err := json.Marshal(spec)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var back Spec
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", b, err)
		}
		if !reflect.DeepEqual(back, spec) {
			t.Fatalf("JSON round trip changed the spec\n got %+v\nwant %+v", back, spec)
		}
		// `raftlb spec show` prints what `raftlb apply` takes back.
		if shown, err := FormatServices(spec); err != nil {
			t.Fatalf("FormatServices: %v", err)
		} else if again, err := ParseServices(shown); err != nil || !reflect.DeepEqual(again, spec) {
			t.Fatalf("spec show → apply changed the spec (%v)\nshown:\n%s\n got %+v\nwant %+v", err, shown, again, spec)
		}
		// And the FSM accepts what the parser accepts (Validate, then
		// ValidateMembers), once the nodes its fencing section names are
		// members.
		fenced := fencedNodes(spec.Fencing)
		if err := spec.ValidateMembers(func(n string) bool { return slices.Contains(fenced, n) }); err != nil {
			t.Fatalf("the members refuse a parsed spec: %v", err)
		}
	})
}

// fencedNodes lists every node a fencing section names.
func fencedNodes(f Fencing) []string {
	seen := map[string]bool{}
	for _, d := range f.Devices {
		for n := range d.Hosts {
			seen[n] = true
		}
	}
	for n := range f.Levels {
		seen[n] = true
	}
	return slices.Sorted(maps.Keys(seen))
}
