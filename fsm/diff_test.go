package fsm

import (
	"slices"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/spec"
)

func TestPreferredDCInTheSpec(t *testing.T) {
	s := squidSpec()
	s.Policy.Preempt = true
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "preempt needs a preferred_dc") {
		t.Errorf("preempt alone: %v", err)
	}
	s.Policy.PreferredDC = "m30"
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := lines(spec.Diff(squidSpec(), s)); !slices.Contains(got, "changed preferred DC: (none) → m30 (preempts)") {
		t.Errorf("diff: %q", got)
	}
	a := &applier{f: New()}
	if res := a.result(t, mustEncode(t, CmdSetSpec, SetSpec{Spec: s})); res.Err == nil || !strings.Contains(res.Err.Error(), "m30 is not a node of the cluster") {
		t.Errorf("a preferred DC that is no node: %v", res.Err)
	}
	out, err := spec.FormatServices(s)
	if err != nil {
		t.Fatal(err)
	}
	back, err := spec.ParseServices(out)
	if err != nil || back.Policy.PreferredDC != "m30" || !back.Policy.Preempt {
		t.Errorf("round trip: %+v, %v\n%s", back.Policy, err, out)
	}
	if (Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: s}}).Schema() != 3 {
		t.Error("a preferred DC is not schema 3")
	}
}

func lines(cs []spec.Change) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.String())
	}
	return out
}
