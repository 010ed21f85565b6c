package spec

import (
	"reflect"
	"strings"
	"testing"
)

// TestFormatServicesRoundTrips: what spec show prints, apply takes back
// unchanged (the version aside: the FSM assigns it).
func TestFormatServicesRoundTrips(t *testing.T) {
	for name, spec := range map[string]Spec{"squid": squidSpec(), "web": webSpec(), "fenced": fencedSpec(), "empty": emptySpec()} {
		t.Run(name, func(t *testing.T) {
			spec.Version = 7
			out, err := FormatServices(spec)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(out), "# raftlb spec version 7") {
				t.Errorf("no version comment:\n%s", out)
			}
			back, err := ParseServices(out)
			if err != nil {
				t.Fatalf("ParseServices of what FormatServices wrote: %v\n%s", err, out)
			}
			want := spec.Normalized()
			want.Version = 0
			if !reflect.DeepEqual(back, want) {
				t.Errorf("round trip changed the spec\n got %+v\nwant %+v\nfile:\n%s", back, want, out)
			}
		})
	}
}
