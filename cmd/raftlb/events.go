package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/signal"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/internal/cli"
)

// runEvents prints the agent's recent events, one line each (or one JSON
// object each with --json), and with --follow every new one until
// interrupted.
func runEvents(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", stderr)
	addr := apiFlag(fs)
	follow := fs.Bool("follow", false, "keep printing events as they happen, until interrupted")
	asJSON := fs.Bool("json", false, "one JSON object per event and line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: events takes no arguments", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	enc := json.NewEncoder(stdout)
	print := func(e events.Event) error {
		if *asJSON {
			return enc.Encode(e)
		}
		_, err := fmt.Fprintln(stdout, events.Line(e))
		return err
	}
	if !*follow {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		list, err := c.Events(ctx)
		if err != nil {
			return fmt.Errorf("events: %w", err)
		}
		for _, e := range list {
			if err := print(e); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := c.FollowEvents(ctx, print); err != nil {
		return fmt.Errorf("events: %w", err)
	}
	return nil
}
