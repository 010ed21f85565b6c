package spec

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestValidateAcceptsValidSpecs(t *testing.T) {
	for name, s := range map[string]Spec{
		"empty": {Policy: Policy{NoQuorum: "stop"}},
		"squid": squidSpec(),
		"web":   webSpec(),
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: Validate: %v", name, err)
		}
	}
}

// TestValidateSpec works on Specs built in code, as the FSM sees them, not
// on YAML: the checks must not depend on the parser.
func TestValidateSpec(t *testing.T) {
	squid := "services[0] (squid 172.95.69.100:3128/tcp)"
	tests := []struct {
		name   string
		mutate func(*Spec)
		want   []string // paths, each must be among the problems
	}{
		{"zero spec", func(s *Spec) { *s = Spec{} }, []string{"policy.no_quorum"}},
		{"missing VIP", func(s *Spec) { s.VIPs[0].Address = netip.Addr{} }, []string{"vips[0].address", squid + ".vip"}},
		{"zoned VIP", func(s *Spec) { s.VIPs = append(s.VIPs, VIP{Address: netip.MustParseAddr("fe80::1%eth0")}) }, []string{"vips[1].address"}},
		{"broadcast VIP", func(s *Spec) { s.VIPs = append(s.VIPs, VIP{Address: netip.MustParseAddr("255.255.255.255")}) }, []string{"vips[1].address"}},
		{"interface dot", func(s *Spec) { s.VIPs[0].Interface = "." }, []string{"vips[0].interface"}},
		{"interface colon", func(s *Spec) { s.VIPs[0].Interface = "eth0:1" }, []string{"vips[0].interface"}},
		{"port 0", func(s *Spec) { s.Services[0].Port = 0 }, []string{"services[0] (squid 172.95.69.100:0/tcp).port"}},
		{"empty protocol", func(s *Spec) { s.Services[0].Protocol = "" }, []string{"services[0] (squid 172.95.69.100:3128/?).protocol"}},
		{"empty scheduler", func(s *Spec) { s.Services[0].Scheduler = "" }, []string{squid + ".scheduler"}},
		{"empty forwarding", func(s *Spec) { s.Services[0].Forwarding = "" }, []string{squid + ".forwarding"}},
		{"negative persistence", func(s *Spec) { s.Services[0].Persistence.Timeout = -time.Second }, []string{squid + ".persistence"}},
		{"servers with all-nodes", func(s *Spec) {
			s.Services[0].RealServers.Servers = []RealServer{{Address: netip.MustParseAddr("10.0.0.5"), Port: 3128, Weight: 1}}
		}, []string{squid + ".real_servers"}},
		{"no servers", func(s *Spec) { s.Services[0].RealServers = RealServers{} }, []string{squid + ".real_servers"}},
		{"real server port 0", func(s *Spec) {
			s.Services[0].RealServers = RealServers{Servers: []RealServer{{Address: netip.MustParseAddr("10.0.0.5"), Weight: 1}}}
		}, []string{squid + ".real_servers[0].port"}},
		{"fallback weight", func(s *Spec) { s.Services[0].Fallback.Weight = 65536 }, []string{squid + ".fallback.weight"}},
		{"fallback address", func(s *Spec) { s.Services[0].Fallback.Address = netip.IPv4Unspecified() }, []string{squid + ".fallback.address"}},
		{"check timeout 0", func(s *Spec) { s.Services[0].HealthCheck.Timeout = 0 }, []string{squid + ".health_check.timeout"}},
		{"http without path and status", func(s *Spec) { s.Services[0].HealthCheck.Type = "http" }, []string{squid + ".health_check.path", squid + ".health_check.expect_status"}},
		{"http path with space", func(s *Spec) {
			hc := s.Services[0].HealthCheck
			hc.Type, hc.Path, hc.ExpectStatus = "http", "/a b", []int{200}
		}, []string{squid + ".health_check.path"}},
		{"verify_tls on tcp", func(s *Spec) { s.Services[0].HealthCheck.VerifyTLS = true }, []string{squid + ".health_check.verify_tls"}},
		{"NUL in exec argument", func(s *Spec) {
			hc := s.Services[0].HealthCheck
			hc.Type, hc.Command = "exec", []string{"/bin/check", "a\x00b"}
		}, []string{squid + ".health_check.command[1]"}},
		{"invalid UTF-8 name", func(s *Spec) { s.Services[0].Name = "sq\xffid" }, []string{".name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := squidSpec()
			tt.mutate(&s)
			err := s.Validate()
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Validate = %v, want *ValidationError", err)
			}
			for _, path := range tt.want {
				found := false
				for _, p := range ve.Problems {
					found = found || p.Path == path || (strings.HasPrefix(path, ".") && strings.HasSuffix(p.Path, path))
				}
				if !found {
					t.Errorf("no problem at %q in:\n%v", path, err)
				}
			}
		})
	}
}

// TestValidateNodeName: the one rule for a node's name, for flags,
// certificates and registry entries alike.
func TestValidateNodeName(t *testing.T) {
	for _, ok := range []string{"m30", "n1", "node-7.example_b", strings.Repeat("a", 63)} {
		if err := ValidateNodeName(ok); err != nil {
			t.Errorf("ValidateNodeName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", strings.Repeat("a", 64), "-m30", ".m30", "m 30", "m30/", "nœud", "m30\n"} {
		if err := ValidateNodeName(bad); err == nil {
			t.Errorf("ValidateNodeName(%q) accepted it", bad)
		}
	}
}
