package main

import (
	"context"
	"encoding/xml"
	"strings"
	"testing"
)

func fenceAgent(t *testing.T, stdin string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := runFenceAgent(context.Background(), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestFenceAgentMetadata: the metadata is the fence-agents XML, naming
// plug as the host argument, so raftlb passes the namespace as plug.
func TestFenceAgentMetadata(t *testing.T) {
	code, out, _ := fenceAgent(t, "action=metadata\n")
	var doc struct {
		Parameters []struct {
			Name string `xml:"name,attr"`
		} `xml:"parameters>parameter"`
	}
	if code != 0 || xml.Unmarshal([]byte(out), &doc) != nil {
		t.Fatalf("metadata: exit %d, %q", code, out)
	}
	var names []string
	for _, p := range doc.Parameters {
		names = append(names, p.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "plug") {
		t.Errorf("metadata parameters %v lack plug", names)
	}
}

// TestFenceAgentRefuses: a broken device fails every action; a plug that
// is no lab namespace, an unknown action and a line that is not
// key=value fail with exit 1 and say why, touching nothing.
func TestFenceAgentRefuses(t *testing.T) {
	for _, c := range []struct{ stdin, want string }{
		{"action=off\nplug=m30\nfail=1\n", "broken device"},
		{"action=status\nfail=1\n", "broken device"},
		{"action=off\nplug=../etc\n", "not a lab namespace"},
		{"action=off\nplug=no-such-namespace-here\n", "not a lab namespace"},
		{"action=off\n", "not a lab namespace"},
		{"action=off\nplug\n", "not key=value"},
	} {
		code, _, stderr := fenceAgent(t, c.stdin)
		if code != 1 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, %q; want 1 saying %q", c.stdin, code, stderr, c.want)
		}
	}
}
