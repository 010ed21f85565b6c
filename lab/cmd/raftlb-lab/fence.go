package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FenceAgentName is the name raftlb-lab answers to as a fence agent (a
// symlink to it, as busybox does): the lab's STONITH device.
const FenceAgentName = "fence_lab"

// The lab's fence agent speaks the ClusterLabs fence-agents protocol, as
// raftlb (and Pacemaker) call it: key=value lines on stdin. Its "machines"
// are the lab's network namespaces, named by plug: off kills every
// process in the namespace (its agent and service die as with the power)
// and downs its eth0, so its kernel answers nobody; on brings it back as
// a freshly booted machine (no address but its own, no IPVS table, the
// link up); status answers truthfully from the link (0 on, 2 off). With
// the option fail=1 it is a broken device: every action but metadata
// fails.
const fenceMetadata = `<?xml version="1.0" ?>
<resource-agent name="fence_lab" shortdesc="Fence agent for the raftlb kernel lab's network namespaces">
<longdesc>Powers a lab node's namespace off (kills its processes, downs its link) and on.</longdesc>
<parameters>
	<parameter name="action" unique="0" required="1"><content type="string" default="reboot"/><shortdesc lang="en">Fencing action</shortdesc></parameter>
	<parameter name="plug" unique="0" required="1"><content type="string"/><shortdesc lang="en">The node's network namespace</shortdesc></parameter>
	<parameter name="fail" unique="0" required="0"><content type="string" default="0"/><shortdesc lang="en">1: a broken device, every action fails</shortdesc></parameter>
	<parameter name="nodename" unique="0" required="0"><content type="string"/><shortdesc lang="en">The node's name</shortdesc></parameter>
</parameters>
<actions>
	<action name="on"/><action name="off"/><action name="reboot"/><action name="status"/>
	<action name="monitor"/><action name="metadata"/><action name="validate-all"/>
</actions>
</resource-agent>
`

// errOff is status's answer for a node that is off: exit 2.
var errOff = errors.New("Status: OFF")

// runFenceAgent is main for fence_lab: it reads the options, acts, and
// returns the exit status (0 success or on, 2 off, 1 failure).
func runFenceAgent(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) int {
	opts, err := readOptions(stdin)
	if err != nil {
		fmt.Fprintf(stderr, "Failed: %v\n", err)
		return 1
	}
	action := opts["action"]
	if action == "" {
		action = "reboot"
	}
	if action == "metadata" {
		fmt.Fprint(stdout, fenceMetadata)
		return 0
	}
	if opts["fail"] == "1" {
		fmt.Fprintln(stderr, "Failed: Unable to connect/login to fencing device (the lab's broken device)")
		return 1
	}
	plug := opts["plug"]
	needsPlug := !slices.Contains([]string{"monitor", "validate-all", "list"}, action)
	if needsPlug && !validPlug(plug) {
		fmt.Fprintf(stderr, "Failed: plug %q is not a lab namespace\n", plug)
		return 1
	}
	switch action {
	case "monitor", "validate-all", "list":
		err = runIP(ctx, "netns", "list")
	case "status":
		err = powerStatus(ctx, plug)
	case "off":
		err = powerOff(ctx, plug)
	case "on":
		err = powerOn(ctx, plug)
	case "reboot":
		if err = powerOff(ctx, plug); err == nil {
			err = powerOn(ctx, plug)
		}
	default:
		err = fmt.Errorf("unknown action %q", action)
	}
	switch {
	case errors.Is(err, errOff):
		fmt.Fprintln(stdout, "Status: OFF")
		return 2
	case err != nil:
		fmt.Fprintf(stderr, "Failed: %v\n", err)
		return 1
	case action == "status":
		fmt.Fprintln(stdout, "Status: ON")
	default:
		fmt.Fprintf(stdout, "Success: %s %s\n", action, plug)
	}
	return 0
}

// readOptions parses fence-agents' stdin: key=value lines, # comments.
func readOptions(r io.Reader) (map[string]string, error) {
	opts := map[string]string{}
	sc := bufio.NewScanner(io.LimitReader(r, 64<<10))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("option line %q is not key=value", line)
		}
		opts[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return opts, sc.Err()
}

func validPlug(p string) bool {
	if p == "" || len(p) > 32 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	_, err := os.Stat("/run/netns/" + p)
	return err == nil
}

// link is eth0 as `ip -j link show` reports it.
type link struct {
	Flags []string `json:"flags"`
}

func powerStatus(ctx context.Context, plug string) error {
	out, err := ipOutput(ctx, "-n", plug, "-j", "link", "show", "dev", "eth0")
	if err != nil {
		return err
	}
	var links []link
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return fmt.Errorf("reading %s's eth0: %v", plug, err)
	}
	if slices.Contains(links[0].Flags, "UP") {
		return nil
	}
	return errOff
}

// powerOff kills every process of the namespace, then downs its link, and
// checks that it is off.
func powerOff(ctx context.Context, plug string) error {
	out, err := ipOutput(ctx, "netns", "pids", plug)
	if err != nil {
		return err
	}
	self := os.Getpid()
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil || pid == self {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %d in %s: %w", pid, plug, err)
		}
	}
	if err := runIP(ctx, "-n", plug, "link", "set", "dev", "eth0", "down"); err != nil {
		return err
	}
	if err := powerStatus(ctx, plug); !errors.Is(err, errOff) {
		return fmt.Errorf("%s is still on after off (%v)", plug, err)
	}
	return nil
}

// addrInfo is one interface's addresses as `ip -j addr show` reports it.
type addrInfo struct {
	AddrInfo []struct {
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

// powerOn boots the namespace's "machine" afresh: the addresses a process
// added go (every host address — a /32 or /128, as raftlb's VIPs — on
// eth0, everything but loopback on lo), the IPVS table is empty, the link
// comes up.
func powerOn(ctx context.Context, plug string) error {
	for _, dev := range []string{"lo", "eth0"} {
		out, err := ipOutput(ctx, "-n", plug, "-j", "addr", "show", "dev", dev)
		if err != nil {
			return err
		}
		var infos []addrInfo
		if err := json.Unmarshal(out, &infos); err != nil || len(infos) != 1 {
			return fmt.Errorf("reading %s's %s: %v", plug, dev, err)
		}
		for _, a := range infos[0].AddrInfo {
			ip, err := netip.ParseAddr(a.Local)
			if err != nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
				continue
			}
			if dev == "eth0" && a.PrefixLen != ip.BitLen() {
				continue // the node's own address, configured at boot
			}
			if err := runIP(ctx, "-n", plug, "addr", "del", fmt.Sprintf("%s/%d", ip, a.PrefixLen), "dev", dev); err != nil {
				return err
			}
		}
	}
	if _, err := output(ctx, "ip", "netns", "exec", plug, "ipvsadm", "-C"); err != nil {
		return err
	}
	if err := runIP(ctx, "-n", plug, "link", "set", "dev", "eth0", "up"); err != nil {
		return err
	}
	return powerStatus(ctx, plug)
}

// fenceCommandTimeout bounds each command the agent runs.
const fenceCommandTimeout = 10 * time.Second

func runIP(ctx context.Context, args ...string) error {
	_, err := ipOutput(ctx, args...)
	return err
}

func ipOutput(ctx context.Context, args ...string) ([]byte, error) {
	return output(ctx, "ip", args...)
}

func output(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, fenceCommandTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out, nil
}
