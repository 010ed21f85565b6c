package spec

import (
	"errors"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestExampleServicesFile(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/services.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseServices(data)
	if err != nil {
		t.Fatalf("ParseServices: %v", err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := squidSpec(); !reflect.DeepEqual(got, want) {
		t.Errorf("ParseServices(example)\n got %+v\nwant %+v", got, want)
	}
}

// TestExampleFencingFile: the fencing example parses, validates and, with
// its nodes members, would be applied; it keeps its secrets in files.
func TestExampleFencingFile(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/fencing.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseServices(data)
	if err != nil {
		t.Fatalf("ParseServices: %v", err)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got.Policy.Takeover != TakeoverFence || len(got.Fencing.Devices) != 4 {
		t.Fatalf("policy %+v, %d devices", got.Policy, len(got.Fencing.Devices))
	}
	levels := got.Fencing.LevelsFor("m40")
	if len(levels) != 2 || levels[0][0].Name != "ipmi-m40" || levels[1][0].Plug("m40") != "2" {
		t.Errorf("m40's levels %+v", levels)
	}
	for _, d := range got.Fencing.Devices {
		for k, p := range d.Params {
			if secretParam(k) && p.File == "" {
				t.Errorf("%s: secret %s is not a file", d.Name, k)
			}
		}
	}
	members := []string{"m30", "m40", "m50"}
	if err := got.ValidateMembers(func(n string) bool { return slices.Contains(members, n) }); err != nil {
		t.Fatalf("the example against its members: %v", err)
	}
}

func TestParseServicesFillsDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Spec
	}{
		{"empty file", "", Spec{Policy: Policy{NoQuorum: "stop", Takeover: "lease"}}},
		{"only comments", "# nothing yet\n", Spec{Policy: Policy{NoQuorum: "stop", Takeover: "lease"}}},
		{"empty mapping", "{}\n", Spec{Policy: Policy{NoQuorum: "stop", Takeover: "lease"}}},
		{"null document", "---\n~\n", Spec{Policy: Policy{NoQuorum: "stop", Takeover: "lease"}}},
		{"empty lists", "vips: []\nservices: []\n", Spec{Policy: Policy{NoQuorum: "stop", Takeover: "lease"}}},
		{
			name: "minimal service",
			in: `
vips: [{address: 10.0.0.1}]
services:
  - vip: 10.0.0.1
    port: 80
    health_check: {}
`,
			want: Spec{
				VIPs:   []VIP{{Address: netip.MustParseAddr("10.0.0.1")}},
				Policy: Policy{NoQuorum: "stop", Takeover: "lease"},
				Services: []Service{{
					VIP: netip.MustParseAddr("10.0.0.1"), Port: 80, Protocol: "tcp", Scheduler: "wlc", Forwarding: "route",
					RealServers: RealServers{AllNodes: true, NodePort: 80, NodeWeight: 1},
					HealthCheck: &HealthCheck{Type: "tcp", Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 2, OnFail: "remove"},
				}},
			},
		},
		{
			name: "explicit list, integer seconds, short interval, http defaults",
			in: `
vips: [{address: 10.0.0.1}]
policy: {no_quorum: stop, takeover: immediate}
services:
  - vip: 10.0.0.1
    port: 80
    scheduler: wrr
    forwarding: route
    persistence: 300
    persistence_netmask: 255.255.0.0
    real_servers:
      - {address: 10.0.1.5}
      - {address: 10.0.1.6, port: 80, weight: 0}
    fallback: 10.0.9.9
    health_check:
      type: http
      interval: 500ms
`,
			want: Spec{
				VIPs:   []VIP{{Address: netip.MustParseAddr("10.0.0.1")}},
				Policy: Policy{NoQuorum: "stop", Takeover: "immediate"},
				Services: []Service{{
					VIP: netip.MustParseAddr("10.0.0.1"), Port: 80, Protocol: "tcp", Scheduler: "wrr", Forwarding: "route",
					Persistence: Persistence{Timeout: 300 * time.Second, Netmask: netip.MustParseAddr("255.255.0.0")},
					RealServers: RealServers{Servers: []RealServer{
						{Address: netip.MustParseAddr("10.0.1.5"), Port: 80, Weight: 1},
						{Address: netip.MustParseAddr("10.0.1.6"), Port: 80, Weight: 0},
					}},
					Fallback: &RealServer{Address: netip.MustParseAddr("10.0.9.9"), Port: 80, Weight: 1},
					HealthCheck: &HealthCheck{
						Type: "http", Interval: 500 * time.Millisecond, Timeout: 500 * time.Millisecond,
						Rise: 2, Fall: 2, OnFail: "remove", Path: "/", ExpectStatus: []int{200},
					},
				}},
			},
		},
		{
			name: "all-nodes with node port and weight, IPv6",
			in: `
vips: [{address: "2001:db8::1"}]
services:
  - {vip: "2001:db8::1", port: 443, forwarding: route, real_servers: all-nodes, node_port: 443, node_weight: 3,
     fallback: "[2001:db8::99]:443"}
`,
			want: Spec{
				VIPs:   []VIP{{Address: netip.MustParseAddr("2001:db8::1")}},
				Policy: Policy{NoQuorum: "stop", Takeover: "lease"},
				Services: []Service{{
					VIP: netip.MustParseAddr("2001:db8::1"), Port: 443, Protocol: "tcp", Scheduler: "wlc", Forwarding: "route",
					RealServers: RealServers{AllNodes: true, NodePort: 443, NodeWeight: 3},
					Fallback:    &RealServer{Address: netip.MustParseAddr("2001:db8::99"), Port: 443, Weight: 1},
				}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseServices([]byte(tt.in))
			if err != nil {
				t.Fatalf("ParseServices: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// goodFile is valid; the error cases below append to it or replace a line.
const goodFile = `vips:
  - address: 10.0.0.1
    interface: eth0
services:
  - name: web
    vip: 10.0.0.1
    port: 80
`

func TestParseServicesRejects(t *testing.T) {
	web := "services[0] (web 10.0.0.1:80/tcp)"
	tests := []struct {
		name string
		in   string
		want []string // each must appear in the error message
	}{
		// YAML-level errors name the line.
		{"syntax", "vips: [\n", []string{"line"}},
		{"tab indentation", "vips:\n\t- address: 10.0.0.1\n", []string{"line 2"}},
		{"unknown top-level field", goodFile + "servics: []\n", []string{"line 8", `unknown field "servics"`}},
		{"unknown service field", goodFile + "    wieght: 2\n", []string{"line 8", `unknown field "wieght" in a service`}},
		{"unknown health_check field", goodFile + "    health_check: {type: tcp, intervall: 1s}\n", []string{"line 8", `"intervall"`}},
		{"unknown real server field", goodFile + "    real_servers: [{address: 10.0.1.1, wieght: 2}]\n", []string{"line 8", `unknown field "wieght" in a real_servers entry`}},
		{"real server not a mapping", goodFile + "    real_servers: [10.0.1.1]\n", []string{"line 8", "mapping"}},
		{"real_servers bad word", goodFile + "    real_servers: some-nodes\n", []string{"line 8", "all-nodes"}},
		{"wrong type", strings.Replace(goodFile, "port: 80", "port: eighty", 1), []string{"line 7", "eighty"}},
		{"float weight", goodFile + "    real_servers: [{address: 10.0.1.1, weight: 1.5}]\n", []string{"line 8", "not a whole number"}},
		{"list where text belongs", goodFile + "    scheduler: [rr]\n", []string{"line 8"}},
		{"two documents", goodFile + "---\nvips: []\n", []string{"exactly one"}},
		{"duplicate key", goodFile + "    port: 81\n", []string{"line 8", "already defined"}},
		{"top level is a list", "- vips\n", []string{"line 1"}},

		// Semantic problems name the path and the line.
		{"bad VIP", strings.Replace(goodFile, "- address: 10.0.0.1", "- address: 10.0.0.300", 1), []string{"line 2", "vips[0].address", "10.0.0.300"}},
		{"loopback VIP", "vips: [{address: 127.0.0.1}]\n", []string{"vips[0].address", "loopback"}},
		{"multicast VIP", "vips: [{address: 224.0.0.1}]\n", []string{"vips[0].address", "multicast"}},
		{"unspecified VIP", "vips: [{address: '::'}]\n", []string{"vips[0].address", "unspecified"}},
		{"missing VIP address", "vips: [{interface: eth0}]\n", []string{"line 1", "vips[0].address: required"}},
		{"duplicate VIP", "vips: [{address: 10.0.0.1}, {address: 10.0.0.1}]\n", []string{"vips[1].address", "duplicate"}},
		{"interface too long", strings.Replace(goodFile, "eth0", "averyveryverylongname", 1), []string{"line 3", "vips[0].interface"}},
		{"interface with slash", strings.Replace(goodFile, "eth0", "eth/0", 1), []string{"vips[0].interface"}},
		{"VIP not listed", strings.Replace(goodFile, "vip: 10.0.0.1", "vip: 10.0.0.2", 1), []string{"line 6", "services[0] (web 10.0.0.2:80/tcp).vip", "not listed"}},
		{"service VIP not an address", strings.Replace(goodFile, "vip: 10.0.0.1", "vip: www", 1), []string{"line 6", ".vip", `"www"`}},
		{"port 0", strings.Replace(goodFile, "port: 80", "port: 0", 1), []string{"line 7", "services[0] (web 10.0.0.1:0/tcp).port"}},
		{"port too big", strings.Replace(goodFile, "port: 80", "port: 70000", 1), []string{"line 7", ".port", "70000"}},
		{"port missing", strings.Replace(goodFile, "    port: 80\n", "", 1), []string{"line 5", ".port"}},
		{"protocol", goodFile + "    protocol: sctp\n", []string{"line 8", "services[0] (web 10.0.0.1:80/sctp).protocol", "sctp"}},
		{"scheduler", goodFile + "    scheduler: fastest\n", []string{"line 8", web + ".scheduler", "fastest"}},
		{"forwarding", goodFile + "    forwarding: gate\n", []string{"line 8", web + ".forwarding", "gate"}},
		{"duplicate service", goodFile + "  - {vip: 10.0.0.1, port: 80}\n", []string{"line 8", "services[1] (10.0.0.1:80/tcp)", "same VIP, port and protocol as services[0]"}},
		{"duplicate name", goodFile + "  - {name: web, vip: 10.0.0.1, port: 81}\n", []string{"services[1] (web 10.0.0.1:81/tcp).name", "duplicate name"}},
		{"name with space", strings.Replace(goodFile, "name: web", "name: my web", 1), []string{"line 5", ".name"}},
		{"negative persistence", goodFile + "    persistence: -5s\n", []string{"line 8", web + ".persistence", "negative"}},
		{"persistence not a duration", goodFile + "    persistence: 20x\n", []string{"line 8", web + ".persistence", `"20x"`}},
		{"sub-second persistence", goodFile + "    persistence: 1500ms\n", []string{"line 8", web + ".persistence", "whole number of seconds"}},
		{"netmask without persistence", goodFile + "    persistence_netmask: 255.255.255.0\n", []string{"line 8", web + ".persistence_netmask", "needs persistence"}},
		{"netmask not contiguous", goodFile + "    persistence: 20\n    persistence_netmask: 255.0.255.0\n", []string{"line 9", web + ".persistence_netmask", "contiguous"}},
		{"netmask IPv6", goodFile + "    persistence: 20\n    persistence_netmask: 'ffff::'\n", []string{web + ".persistence_netmask", "IPv4"}},
		{"empty real server list", goodFile + "    real_servers: []\n", []string{"line 8", web + ".real_servers", "at least one"}},
		{"real server weight too big", goodFile + "    real_servers: [{address: 10.0.1.1, weight: 70000}]\n", []string{"line 8", web + ".real_servers[0].weight", "70000"}},
		{"real server weight negative", goodFile + "    real_servers: [{address: 10.0.1.1, weight: -1}]\n", []string{web + ".real_servers[0].weight"}},
		{"real server without address", goodFile + "    real_servers: [{port: 80}]\n", []string{"line 8", web + ".real_servers[0].address: required"}},
		{"real server bad address", goodFile + "    real_servers: [{address: host1}]\n", []string{web + ".real_servers[0].address", "host1"}},
		{"duplicate real server", goodFile + "    real_servers: [{address: 10.0.1.1}, {address: 10.0.1.1, port: 80}]\n", []string{web + ".real_servers[1]", "duplicate"}},
		{"route cannot change port", goodFile + "    real_servers: [{address: 10.0.1.1, port: 8080}]\n", []string{web + ".real_servers[0].port", "direct routing cannot change the port"}},
		{"masq refused", goodFile + "    forwarding: masq\n", []string{"line 8", web + ".forwarding", "masq is not supported", "direct routing only"}},
		{"tunnel refused", goodFile + "    forwarding: tunnel\n", []string{"line 8", web + ".forwarding", "tunnel is not supported"}},
		{"route cannot change node port", goodFile + "    node_port: 8080\n", []string{"line 8", web + ".node_port"}},
		{"node weight without all-nodes", goodFile + "    real_servers: [{address: 10.0.1.1}]\n    node_weight: 2\n", []string{"line 9", web + ".node_weight", "all-nodes"}},
		{"node weight out of range", goodFile + "    node_weight: 65536\n", []string{web + ".node_weight", "65536"}},
		{"address family mismatch", goodFile + "    real_servers: [{address: '2001:db8::5'}]\n", []string{web + ".real_servers[0].address", "family"}},
		{"IPv4-mapped address", goodFile + "    real_servers: [{address: '::ffff:10.0.1.1'}]\n", []string{web + ".real_servers[0].address", "10.0.1.1"}},
		{"fallback not an address", goodFile + "    fallback: localhost:80\n", []string{"line 8", web + ".fallback", "ADDR:PORT"}},
		{"fallback port 0", goodFile + "    fallback: 127.0.0.1:0\n", []string{"line 8", web + ".fallback.port"}},
		{"health check type", goodFile + "    health_check: {type: ping}\n", []string{"line 8", web + ".health_check.type", "ping"}},
		{"health check interval 0", goodFile + "    health_check: {interval: 0}\n", []string{web + ".health_check.interval", "positive"}},
		{"health check timeout above interval", goodFile + "    health_check: {interval: 1s, timeout: 2s}\n", []string{web + ".health_check.timeout", "exceeds"}},
		{"health check bad duration", goodFile + "    health_check:\n      interval: soon\n", []string{"line 9", web + ".health_check.interval", `"soon"`}},
		{"health check rise 0", goodFile + "    health_check: {rise: 0}\n", []string{web + ".health_check.rise"}},
		{"health check fall 0", goodFile + "    health_check: {fall: 0}\n", []string{web + ".health_check.fall"}},
		{"health check on_fail", goodFile + "    health_check: {on_fail: panic}\n", []string{web + ".health_check.on_fail", "panic"}},
		{"bad regex", goodFile + "    health_check: {type: http, body_regex: 'ok('}\n", []string{web + ".health_check.body_regex", "missing closing )"}},
		{"bad md5", goodFile + "    health_check: {type: http, digest_md5: abc}\n", []string{web + ".health_check.digest_md5", "32 hexadecimal"}},
		{"bad sha256", goodFile + "    health_check: {type: https, digest_sha256: " + strings.Repeat("z", 64) + "}\n", []string{web + ".health_check.digest_sha256", "64 hexadecimal"}},
		{"http path", goodFile + "    health_check: {type: http, path: healthz}\n", []string{web + ".health_check.path", "start with /"}},
		{"expect status", goodFile + "    health_check: {type: http, expect_status: [200, 99]}\n", []string{"line 8", web + ".health_check.expect_status[1]", "99"}},
		{"http field on tcp check", goodFile + "    health_check: {type: tcp, path: /}\n", []string{web + ".health_check.path", "only applies"}},
		{"server_name on http check", goodFile + "    health_check: {type: http, server_name: a.example}\n", []string{web + ".health_check.server_name", "https"}},
		{"exec without command", goodFile + "    health_check: {type: exec}\n", []string{web + ".health_check.command", "need a command"}},
		{"exec relative command", goodFile + "    health_check: {type: exec, command: [check, --fast]}\n", []string{web + ".health_check.command[0]", "absolute"}},
		{"exec command as string", goodFile + "    health_check: {type: exec, command: /bin/check}\n", []string{"line 8"}},
		{"interval 1ms", goodFile + "    health_check: {interval: 1ms, timeout: 1ms}\n", []string{web + ".health_check.interval", "1ms: want at least 100ms"}},
		{"exec interval 500ms", goodFile + "    health_check: {type: exec, command: [/bin/check], interval: 500ms, timeout: 100ms}\n", []string{web + ".health_check.interval", "an exec check starts a process each time; want at least 1s"}},
		{"command on tcp check", goodFile + "    health_check: {command: [/bin/true]}\n", []string{web + ".health_check.command", "exec"}},
		{"no_quorum", goodFile + "policy: {no_quorum: panic}\n", []string{"line 8", "policy.no_quorum", "panic"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseServices([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseServices succeeded with %+v; want an error", spec)
			}
			if !reflect.DeepEqual(spec, Spec{}) {
				t.Errorf("ParseServices returned %+v with the error; want the zero Spec", spec)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestParseServicesRejectsWholeFileForOneBadEntry(t *testing.T) {
	in := goodFile + `  - {name: api, vip: 10.0.0.1, port: 8080}
  - {name: dns, vip: 10.0.0.1, port: 53, protocol: udp, scheduler: nope}
  - {name: ssh, vip: 10.0.0.1, port: 22}
`
	spec, err := ParseServices([]byte(in))
	if err == nil {
		t.Fatalf("ParseServices succeeded with %d services; want the file rejected", len(spec.Services))
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want *ValidationError: %v", err, err)
	}
	want := []Problem{{Path: "services[2] (dns 10.0.0.1:53/udp).scheduler", Line: 9,
		Message: `unknown scheduler "nope" (want one of rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh)`}}
	if !reflect.DeepEqual(ve.Problems, want) {
		t.Errorf("problems = %+v\nwant %+v", ve.Problems, want)
	}
	if got := err.Error(); got != "line 9: services[2] (dns 10.0.0.1:53/udp).scheduler: "+want[0].Message {
		t.Errorf("Error() = %q", got)
	}
}

func TestParseServicesReportsEveryProblemInFileOrder(t *testing.T) {
	in := `vips:
  - address: 10.0.0.1
  - address: nope
services:
  - vip: 10.0.0.1
    port: 80
    scheduler: fastest
    real_servers: [{address: 10.0.1.1, weight: 100000}]
policy: {no_quorum: maybe}
`
	_, err := ParseServices([]byte(in))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error is %T, want *ValidationError: %v", err, err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Path)
	}
	want := []string{
		"vips[1].address",
		"services[0] (10.0.0.1:80/tcp).scheduler",
		"services[0] (10.0.0.1:80/tcp).real_servers[0].weight",
		"policy.no_quorum",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problem paths = %q\nwant %q\n%v", got, want, err)
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("Error() has %d lines, want one per problem:\n%v", n, err)
	}
}

func TestResourcesRejected(t *testing.T) {
	base := `vips: [{address: 10.0.0.1}]
policy: {takeover: fence}
fencing: {devices: [{name: d, agent: fence_dummy, hosts: [m1]}]}
resources:
`
	tests := []struct {
		name, in string
		want     []string
	}{
		{"neither agent nor command", base + "  - {name: a}\n", []string{"resources[0]", "needs agent"}},
		{"both", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', command: [/bin/true]}\n", []string{"not both"}},
		{"unknown agent class", base + "  - {name: a, agent: 'lsb:apache2'}\n", []string{"resources[0].agent", "ocf:PROVIDER:TYPE"}},
		{"agent escapes the root", base + "  - {name: a, agent: 'ocf:..:Dummy'}\n", []string{"resources[0].agent"}},
		{"agent with a slash", base + "  - {name: a, agent: 'ocf:heartbeat:../../bin/sh'}\n", []string{"resources[0].agent"}},
		{"relative command", base + "  - {name: a, command: [hooks/app]}\n", []string{"resources[0].command[0]", "not an absolute path"}},
		{"unclean command", base + "  - {name: a, command: [/etc/../bin/sh]}\n", []string{"not a clean path"}},
		{"params for a command", base + "  - {name: a, command: [/bin/true], params: {x: y}}\n", []string{"params are for OCF agents"}},
		{"bad param name", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', params: {'1x': y}}\n", []string{"resources[0].params.1x"}},
		{"control character", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', params: {x: \"a\\nb\"}}\n", []string{"control characters"}},
		{"timeout too short", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', start_timeout: 10ms}\n", []string{"resources[0].start_timeout", "want 1s to 10m0s"}},
		{"timeout too long", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', stop_timeout: 1h}\n", []string{"resources[0].stop_timeout"}},
		{"timeout not a duration", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', monitor_timeout: soon}\n", []string{"not a duration"}},
		{"monitor too often", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', monitor_interval: 100ms}\n", []string{"resources[0].monitor_interval"}},
		{"duplicate name", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy'}\n  - {name: a, agent: 'ocf:heartbeat:Dummy'}\n", []string{"resources[1].name", "duplicate"}},
		{"unknown field", base + "  - {name: a, agent: 'ocf:heartbeat:Dummy', timeout: 5s}\n", []string{`unknown field "timeout"`}},
		{"without fencing", "vips: [{address: 10.0.0.1}]\npolicy: {takeover: lease}\nresources: [{name: a, agent: 'ocf:heartbeat:Dummy'}]\n", []string{"resources need policy takeover: fence"}},
		{"without a VIP", "policy: {takeover: fence}\nfencing: {devices: [{name: d, agent: fence_dummy, hosts: [m1]}]}\nresources: [{name: a, agent: 'ocf:heartbeat:Dummy'}]\n", []string{"needs a VIP"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := ParseServices([]byte(tt.in))
			if err == nil {
				t.Fatalf("accepted: %+v", spec.Resources)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
