package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/spec"
)

const fenceUsage = `Usage:
  raftlb fence [--api ADDR] [--action off|reboot] [--wait D] NODE   have the DC fence NODE with the spec's devices
  raftlb fence confirm [--api ADDR] NODE                              tell the cluster NODE is down (like stonith_admin --confirm)
  raftlb fence history [--api ADDR] [--json]                          show the fencing history
`

// fencePoll is how often raftlb fence looks for the result.
const fencePoll = 250 * time.Millisecond

func runFence(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "confirm":
			return runFenceConfirm(args[1:], stdout, stderr)
		case "history":
			return show(args[1:], "fence history", stdout, stderr, func(ctx context.Context, c *api.Client) (any, error) { return c.FenceHistory(ctx) },
				func(w io.Writer, v any) error { return api.RenderFenceHistory(w, v.(api.FenceHistoryResponse).Events) })
		}
	}
	fs := newFlagSet("fence", stderr)
	fs.Usage = func() { fmt.Fprint(stderr, fenceUsage) }
	addr := apiFlag(fs)
	action := fs.String("action", "", "off or reboot (default: each device's own)")
	wait := fs.Duration("wait", 5*time.Minute, "wait this long for the result (0: return once the DC has recorded the intent)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if sub := fs.Arg(0); sub == "confirm" || sub == "history" {
		return fmt.Errorf("%w: %s comes right after fence: raftlb fence %s [--api ADDR] ...", cli.ErrUsage, sub, sub)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: fence needs exactly one NODE\n%s", cli.ErrUsage, fenceUsage)
	}
	node := fs.Arg(0)
	if err := spec.ValidateNodeName(node); err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	switch *action {
	case "", spec.FenceOff, spec.FenceReboot:
	default:
		return fmt.Errorf("%w: --action %q: want off or reboot", cli.ErrUsage, *action)
	}
	if *wait < 0 {
		return fmt.Errorf("%w: --wait must not be negative", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := c.Fence(ctx, node, *action)
	if err != nil {
		return fmt.Errorf("fence: %w", err)
	}
	fmt.Fprintf(stdout, "fencing %s (%s): recorded by %s as #%d\n", node, ev.Action, ev.By, ev.ID)
	if *wait == 0 {
		return nil
	}
	wctx, wcancel := context.WithTimeout(context.Background(), *wait)
	defer wcancel()
	for {
		h, err := c.FenceHistory(wctx)
		if err == nil {
			for _, e := range h.Events {
				if e.ID != ev.ID || e.Result == "" {
					continue
				}
				if err := api.RenderFenceHistory(stdout, []fsm.FenceEvent{e}); err != nil {
					return err
				}
				if e.Result != fsm.FenceSuccess {
					return fmt.Errorf("fencing %s failed", node)
				}
				return nil
			}
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("fencing %s: no result within %s (see raftlb fence history)", node, *wait)
		case <-time.After(fencePoll):
		}
	}
}

func runFenceConfirm(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fence confirm", stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: fence confirm needs exactly one NODE", cli.ErrUsage)
	}
	node := fs.Arg(0)
	if err := spec.ValidateNodeName(node); err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev, err := c.Confirm(ctx, node)
	if err != nil {
		return fmt.Errorf("fence confirm: %w", err)
	}
	fmt.Fprintf(stdout, "recorded: %s is down (confirmed on %s, #%d); the VIPs it held may be taken over\n", node, ev.By, ev.ID)
	return nil
}
