package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/realserver"
)

// runRelease takes this node's VIPs off their interfaces and removes its
// IPVS services for them, after the agent has exited however it exited
// (the systemd unit's ExecStopPost): a killed or crashed agent's node then
// stops answering ARP and balancing at once, not when the lease ends. It
// refuses while the agent answers on its admin API: a running DC must not
// lose its VIPs behind its back.
func runRelease(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("release", stderr)
	dataDir := fs.String("data-dir", "", "the agent's data directory (its vips.json names the VIPs and their interfaces)")
	addr := apiFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *dataDir == "" {
		return fmt.Errorf("%w: release needs --data-dir and takes no arguments", cli.ErrUsage)
	}
	if c, err := api.NewClient(*addr); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return fmt.Errorf("the agent is running (it answers on %s): stop it first; release is for after it exited", *addr)
		}
	}
	state := filepath.Join(*dataDir, "vips.json")
	if _, err := os.Stat(state); err != nil {
		fmt.Fprintf(stdout, "released nothing: %s does not exist (no VIP was ever managed here)\n", state)
		return nil
	}
	vips, err := realserver.Release(realserver.Netlink{}, state)
	if err != nil {
		return err
	}
	services := 0
	if _, err := os.Stat("/proc/net/ip_vs"); err == nil {
		logrus.SetOutput(io.Discard)
		ipvs, err := dataplane.NewKernelIPVS()
		if err != nil {
			return err
		}
		defer ipvs.Close()
		if services, err = dataplane.Release(ipvs, vips); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "released %d VIP(s) from their interfaces and %d IPVS service(s)\n", len(vips), services)
	return nil
}
