package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/internal/cli"
)

// adminTimeout bounds node removal and a DC move (a hand-over included).
const adminTimeout = 30 * time.Second

// runNode is `raftlb node remove [--force] NODE` (the DC removes a node
// that is gone for good, as crm_node -R) and `raftlb node standby|unstandby
// NODE` (pcs node standby).
func runNode(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "standby" || args[0] == "unstandby") {
		return runStandby(args, stdout, stderr)
	}
	if len(args) == 0 || args[0] != "remove" {
		return fmt.Errorf("%w: node needs remove, standby or unstandby", cli.ErrUsage)
	}
	fs := newFlagSet("node remove", stderr)
	addr := apiFlag(fs)
	force := fs.Bool("force", false, "remove it even though gossip sees it online")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: node remove needs exactly one NODE", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := c.RemoveNode(ctx, fs.Arg(0), *force); err != nil {
		return fmt.Errorf("node remove: %w", err)
	}
	fmt.Fprintf(stdout, "removed %s from the cluster; it is no longer a voter, a real server or a node in status\n", fs.Arg(0))
	return nil
}

// runDC is `raftlb dc move [NODE]`: the DC hands its role to NODE (any
// node that can direct) with the graceful hand-over of a clean stop.
func runDC(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "move" {
		return fmt.Errorf("%w: dc needs move", cli.ErrUsage)
	}
	fs := newFlagSet("dc move", stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return fmt.Errorf("%w: dc move takes at most one NODE", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	moved, err := c.MoveDC(ctx, fs.Arg(0))
	if err != nil {
		return fmt.Errorf("dc move: %w", err)
	}
	fmt.Fprintf(stdout, "the DC is now %s\n", moved.DC)
	if moved.Pending != "" {
		fmt.Fprintf(stderr, "warning: the move is not complete yet: %s (see raftlb status)\n", moved.Pending)
	}
	return nil
}

func runStandby(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("node "+args[0], stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: node %s needs exactly one NODE", cli.ErrUsage, args[0])
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	on := args[0] == "standby"
	if err := c.SetStandby(ctx, fs.Arg(0), on); err != nil {
		return fmt.Errorf("node %s: %w", args[0], err)
	}
	if on {
		fmt.Fprintf(stdout, "%s is in standby: no new connections reach it (weight 0, the ones it has finish), and it is DC only when no other node can be\n", fs.Arg(0))
	} else {
		fmt.Fprintf(stdout, "%s is back: it takes new connections and may be DC\n", fs.Arg(0))
	}
	return nil
}

// runServer is `raftlb server disable|enable SERVICE SERVER`: one real
// server drained (weight 0) or back, as ipvsadm -e -w 0.
func runServer(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "disable" && args[0] != "enable") {
		return fmt.Errorf("%w: server needs disable or enable", cli.ErrUsage)
	}
	fs := newFlagSet("server "+args[0], stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("%w: server %s needs SERVICE (a name or VIP:PORT[/PROTOCOL]) and SERVER (ADDR or ADDR:PORT)", cli.ErrUsage, args[0])
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	disable := args[0] == "disable"
	server, err := c.SetServer(ctx, fs.Arg(0), fs.Arg(1), disable)
	if err != nil {
		return fmt.Errorf("server %s: %w", args[0], err)
	}
	if disable {
		fmt.Fprintf(stdout, "disabled %s: no new connections (weight 0), the ones it has finish\n", server)
	} else {
		fmt.Fprintf(stdout, "enabled %s\n", server)
	}
	return nil
}
