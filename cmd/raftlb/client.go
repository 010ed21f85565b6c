package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/status"
)

func apiFlag(fs interface {
	String(name, value, usage string) *string
}) *string {
	return fs.String("api", api.DefaultAddr, "the local agent's admin API: unix:///path or IP:PORT")
}

func runJoin(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("join", stderr)
	addr := apiFlag(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "give up joining after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: join needs at least one HOST:GOSSIPPORT of a cluster member", cli.ErrUsage)
	}
	for _, a := range fs.Args() {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: %q is not HOST:GOSSIPPORT: %v", cli.ErrUsage, a, err)
		}
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	r, err := c.Join(ctx, fs.Args())
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	fmt.Fprintf(stdout, "joined: contacted %d node(s)\n", r.Contacted)
	return nil
}

func runLeave(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("leave", stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: leave takes no arguments", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.Leave(ctx); err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	fmt.Fprintln(stdout, "left the cluster; the agent is stopping")
	return nil
}

func runApply(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("apply", stderr)
	addr := apiFlag(fs)
	file := fs.String("f", "", "services file (YAML); - for standard input")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: apply needs exactly -f FILE", cli.ErrUsage)
	}
	var data []byte
	var err error
	if *file == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 1<<20+1))
	} else {
		data, err = os.ReadFile(*file)
	}
	if err != nil {
		return fmt.Errorf("read services file: %w", err)
	}
	// Check locally first: a broken file is reported even when the agent
	// is down, and never leaves this machine.
	if _, err := fsm.ParseServices(data); err != nil {
		return fmt.Errorf("%s rejected, nothing was changed:\n%w", *file, err)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Apply(ctx, data)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	if r.Changed {
		fmt.Fprintf(stdout, "applied: spec version %d\n", r.SpecVersion)
	} else {
		fmt.Fprintf(stdout, "unchanged: spec version %d\n", r.SpecVersion)
	}
	return nil
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	return show(args, "status", stdout, stderr, func(ctx context.Context, c *api.Client) (any, error) { return c.Status(ctx) },
		func(w io.Writer, v any) error { return api.RenderStatus(w, v.(status.Status)) })
}

func runIPVS(args []string, stdout, stderr io.Writer) error {
	return show(args, "ipvs", stdout, stderr, func(ctx context.Context, c *api.Client) (any, error) { return c.IPVS(ctx) },
		func(w io.Writer, v any) error { return api.RenderIPVS(w, v.(api.IPVSResponse)) })
}

// showTimeout bounds a read of the agent's views.
const showTimeout = 10 * time.Second

// show is a command that reads one view of the agent (get) and prints it
// as text (render) or, with --json, as JSON.
func show(args []string, name string, stdout, stderr io.Writer, get func(context.Context, *api.Client) (any, error), render func(io.Writer, any) error) error {
	fs := newFlagSet(name, stderr)
	addr := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: %s takes no arguments", cli.ErrUsage, name)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), showTimeout)
	defer cancel()
	v, err := get(ctx, c)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	return render(stdout, v)
}
