//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestEventsAndNotifyOnAFailover: through real agents (the fake data
// plane: the whole director runs, nothing reaches the kernel), every node's
// notify script gets the events of a graceful failover in order, and
// raftlb events shows them.
func TestEventsAndNotifyOnAFailover(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	script := filepath.Join(t.TempDir(), "notify.sh")
	// The directory comes as an argument: --notify in its exec form.
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"$RAFTLB_EVENT $RAFTLB_VIP\" >> \"$1/$RAFTLB_NODE\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	argv, err := json.Marshal([]string{script, out})
	if err != nil {
		t.Fatal(err)
	}
	extra := map[string][]string{}
	for _, n := range []string{"n1", "n2", "n3"} {
		extra[n] = []string{"--notify", string(argv)}
	}
	c := startClusterExtra(t, blockEvents, 3, "fake", extra)
	applyAndWait(c, c.agents[0], writeFile(t, c.dir, "squid.yaml", squidServices), c.agents)
	dcName, err := c.agreed(c.agents, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	dc := c.byName(dcName)
	seen := func(node string) []string {
		data, _ := os.ReadFile(filepath.Join(out, node))
		var lines []string
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if strings.HasPrefix(l, "dc_gained") || strings.HasPrefix(l, "dc_lost") || strings.HasPrefix(l, "vip_") {
				lines = append(lines, strings.TrimSpace(l))
			}
		}
		return lines
	}
	c.waitFor("the DC's script told of the claim", changeTimeout, func() error {
		if got := seen(dc.name); !slices.Equal(got, []string{"dc_gained", "vip_claimed 192.0.2.100"}) {
			return fmt.Errorf("%s's script saw %q", dc.name, got)
		}
		return nil
	})
	r := c.run("events", "--api", dc.api, "--json")
	var types []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e struct{ Type, Node string }
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("raftlb events --json: %v in %q", err, line)
		}
		if e.Node != dc.name {
			t.Errorf("an event of %s from %s's agent", e.Node, dc.name)
		}
		types = append(types, e.Type)
	}
	if r.code != 0 || !slices.Contains(types, "dc_gained") || !slices.Contains(types, "vip_claimed") {
		t.Errorf("raftlb events on the DC: %v (%s)", types, r)
	}
	if r := c.run("events", "--api", dc.api); r.code != 0 || !strings.Contains(r.stdout, " "+dc.name+" vip_claimed vip=192.0.2.100 term=") {
		t.Errorf("raftlb events: %s", r)
	}

	c.signal(dc, syscall.SIGTERM)
	c.waitExit(dc)
	if got, want := seen(dc.name), []string{"dc_gained", "vip_claimed 192.0.2.100", "vip_released 192.0.2.100", "dc_lost"}; !slices.Equal(got, want) {
		t.Errorf("the old DC's script saw %q, want %q", got, want)
	}
	rest := c.others(dc)
	var next string
	c.waitFor("a new DC's script told of its claim", changeTimeout, func() error {
		for _, a := range rest {
			if slices.Equal(seen(a.name), []string{"dc_gained", "vip_claimed 192.0.2.100"}) {
				next = a.name
				return nil
			}
		}
		return fmt.Errorf("the scripts saw %q and %q", seen(rest[0].name), seen(rest[1].name))
	})
	for _, a := range rest {
		if a.name != next && len(seen(a.name)) != 0 {
			t.Errorf("%s, not DC, saw %q", a.name, seen(a.name))
		}
		if a.name != next {
			c.waitFor(a.name+"'s script told the DC moved", changeTimeout, func() error {
				data, _ := os.ReadFile(filepath.Join(out, a.name))
				if !strings.Contains(string(data), "dc_changed") {
					st, _ := c.status(a)
					return fmt.Errorf("%s's script saw %q; events: %s; status DC %q quorum %v", a.name, data, c.run("events", "--api", a.api).stdout, st.DC, st.Quorum)
				}
				return nil
			})
		}
	}
}
