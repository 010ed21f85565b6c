//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// weights is the DC's IPVS table (`raftlb ipvs --json`, the fake data
// plane's) as real-server address → weight.
func (c *cluster) weights(dc *agent) (map[string]int, error) {
	r, err := c.raftlb("ipvs", "--api", dc.api, "--json")
	if err != nil || r.code != 0 {
		return nil, fmt.Errorf("ipvs on %s: %v %s", dc.name, err, r)
	}
	var t struct {
		Services []struct {
			RealServers []struct {
				Address string `json:"address"`
				Weight  int    `json:"weight"`
			} `json:"real_servers"`
		} `json:"services"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &t); err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range t.Services {
		for _, rs := range s.RealServers {
			out[rs.Address] = rs.Weight
		}
	}
	return out, nil
}

// waitWeights waits until the current DC's table has want.
func (c *cluster) waitWeights(what string, view []*agent, want map[string]int) {
	c.t.Helper()
	c.waitFor(what, changeTimeout, func() error {
		dc, err := c.agreed(view, len(view), len(view))
		if err != nil {
			return err
		}
		got, err := c.weights(c.byName(dc))
		if err != nil {
			return err
		}
		for addr, w := range want {
			if got[addr] != w {
				return fmt.Errorf("DC %s's table %v, want %v", dc, got, want)
			}
		}
		return nil
	})
}

// TestMaintenanceThroughTheCLI, driven only through the CLI with the fake
// data plane: a node in standby and a disabled real server are drained in
// the DC's table (weight 0) and shown in status; the DC moves on request;
// a DC put in standby hands over; an offline node is removed from another
// node, and an online one is refused.
func TestMaintenanceThroughTheCLI(t *testing.T) {
	t.Parallel()
	c := startClusterWith(t, blockMaintenance, 4, "fake")
	dir := t.TempDir()
	applyAndWait(c, c.agents[0], writeFile(t, dir, "squid.yaml", squidServices), c.agents)
	all := map[string]int{}
	for _, a := range c.agents {
		all[a.ip] = 1
	}
	c.waitWeights("every node at weight 1", c.agents, all)

	dc := c.byName(c.mustStatus(c.agents[0]).DC)
	members := c.others(dc)
	standby, disabled, via := members[0], members[1], members[2]

	r := c.run("node", "standby", "--api", via.api, standby.name)
	if r.code != 0 || !strings.Contains(r.stdout, "is in standby") {
		t.Fatalf("node standby: %s", r)
	}
	r = c.run("server", "disable", "--api", via.api, "squid", disabled.ip)
	if r.code != 0 || !strings.Contains(r.stdout, "disabled "+disabled.ip+":3128") {
		t.Fatalf("server disable: %s", r)
	}
	drained := map[string]int{standby.ip: 0, disabled.ip: 0, dc.ip: 1, via.ip: 1}
	c.waitWeights("the standby node and the disabled server at weight 0", c.agents, drained)
	// via is a member: its view follows the DC's commits by up to a
	// commit timeout.
	c.waitFor("via's status to show both drains", 10*time.Second, func() error {
		text := c.statusText(via)
		for _, want := range []string{standby.name, "STANDBY", "drained: node " + standby.name + " in standby", "drained: disabled"} {
			if !strings.Contains(text, want) {
				return fmt.Errorf("status lacks %q:\n%s", want, text)
			}
		}
		return nil
	})

	// The DC moves on request, to the node named.
	r = c.run("dc", "move", "--api", standby.api, via.name)
	if r.code != 0 || strings.TrimSpace(r.stdout) != "the DC is now "+via.name {
		t.Fatalf("dc move: %s", r)
	}
	if r.stderr != "" {
		t.Errorf("dc move warned: %s", r)
	}
	// Once the move returned, the node asked shows it done: the new DC,
	// and nothing critical (a planned move pages no one). The old DC
	// learns the new one from its next heartbeat.
	if st := c.mustStatus(standby); st.DC != via.name {
		t.Errorf("after dc move the DC is %q on the node asked, want %s", st.DC, via.name)
	}
	if r := c.run("status", "--api", standby.api); r.code >= 2 {
		t.Errorf("status right after a planned move: %s", r)
	}
	c.waitFor("the old DC knows the new one", changeTimeout, func() error {
		if st := c.mustStatus(dc); st.DC != via.name {
			return fmt.Errorf("the old DC %s names %q as DC", dc.name, st.DC)
		}
		return nil
	})
	r = c.run("dc", "move", "--api", dc.api, standby.name)
	if r.code == 0 || !strings.Contains(r.stderr, "cannot take the DC role") {
		t.Errorf("dc move to a node in standby: %s", r)
	}
	// The DC in standby hands over to a node that can direct.
	c.mustRaftlb("node", "standby", "--api", dc.api, via.name)
	c.waitFor("a DC that is not in standby", changeTimeout, func() error {
		got, err := c.agreed(c.agents, 4, 4)
		if err == nil && (got == via.name || got == standby.name) {
			err = fmt.Errorf("DC %s is in standby", got)
		}
		return err
	})
	c.mustRaftlb("node", "unstandby", "--api", dc.api, via.name)
	c.mustRaftlb("node", "unstandby", "--api", dc.api, standby.name)
	c.mustRaftlb("server", "enable", "--api", dc.api, "squid", disabled.ip)
	c.waitWeights("every node back at weight 1", c.agents, all)

	// Remove a node: refused while it runs, done from another node once
	// it is gone.
	now := c.byName(c.mustStatus(dc).DC)
	victim := c.others(now)[0]
	r = c.run("node", "remove", "--api", now.api, victim.name)
	if r.code == 0 || !strings.Contains(r.stderr, "is online") {
		t.Errorf("node remove of an online node: %s", r)
	}
	c.kill(victim)
	rest := c.others(victim)
	from := c.others(now, victim)[0]
	c.waitFor(victim.name+" removed", changeTimeout, func() error {
		if r := c.run("node", "remove", "--api", from.api, victim.name); r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	c.waitFor(victim.name+" gone from every status", changeTimeout, func() error {
		_, err := c.agreed(rest, 3, 3)
		return err
	})
}
