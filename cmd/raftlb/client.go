package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/spec"
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
	dryRun := fs.Bool("dry-run", false, "print what the file would change, and change nothing")
	allowEmpty := fs.Bool("allow-empty", false, "accept a file without services or VIPs, which removes them all")
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
	if _, err := spec.ParseServices(data); err != nil {
		return fmt.Errorf("%s rejected, nothing was changed:\n%w", *file, err)
	}
	return applySpec(*addr, data, api.ApplyOptions{DryRun: *dryRun, AllowEmpty: *allowEmpty}, stdout)
}

// applySpec submits a services file and prints what it changed.
func applySpec(addr string, data []byte, o api.ApplyOptions, stdout io.Writer) error {
	c, err := api.NewClient(addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := c.Apply(ctx, data, o)
	if err != nil {
		return fmt.Errorf("apply: %w", err)
	}
	switch {
	case r.DryRun && len(r.Changes) == 0:
		fmt.Fprintf(stdout, "dry run: the file matches spec version %d; nothing to change\n", r.SpecVersion)
	case r.DryRun:
		fmt.Fprintf(stdout, "dry run: nothing was changed; against spec version %d, applying would make %d change(s):\n", r.SpecVersion, len(r.Changes))
	case r.Changed:
		fmt.Fprintf(stdout, "applied: spec version %d, %d change(s):\n", r.SpecVersion, len(r.Changes))
	default:
		fmt.Fprintf(stdout, "unchanged: spec version %d\n", r.SpecVersion)
	}
	for _, ch := range r.Changes {
		fmt.Fprintf(stdout, "  %s\n", ch)
	}
	if r.CatchingUp {
		fmt.Fprintln(stdout, "note: this node has not applied that version yet; its status may show an older one for a moment")
	}
	return nil
}

// runSpec is `raftlb spec show` (the applied spec as a services file that
// apply takes back) and `raftlb spec clear` (remove every service and VIP).
func runSpec(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "show" && args[0] != "clear") {
		return fmt.Errorf("%w: spec needs show or clear", cli.ErrUsage)
	}
	fs := newFlagSet("spec "+args[0], stderr)
	addr := apiFlag(fs)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: spec %s takes no arguments", cli.ErrUsage, args[0])
	}
	if args[0] == "clear" {
		return applySpec(*addr, nil, api.ApplyOptions{AllowEmpty: true}, stdout)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), showTimeout)
	defer cancel()
	out, err := c.Spec(ctx)
	if err != nil {
		return fmt.Errorf("spec show: %w", err)
	}
	_, err = stdout.Write(out)
	return err
}

// runStatus prints the status view and exits as a monitoring check does:
// 0 ok, 1 degraded, 2 critical (no quorum), 3 when the agent cannot be
// asked. --watch refreshes it, as crm_mon does.
func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	addr := apiFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	watch := fs.Bool("watch", false, "refresh the view until interrupted")
	interval := fs.Duration("interval", 2*time.Second, "with --watch: how often to refresh")
	count := fs.Int("count", 0, "with --watch: stop after this many views (0: until interrupted)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return fmt.Errorf("%w: status takes no arguments", cli.ErrUsage)
	case *interval < 100*time.Millisecond:
		return fmt.Errorf("%w: --interval %s: at least 100ms", cli.ErrUsage, *interval)
	case *count < 0:
		return fmt.Errorf("%w: --count %d: not negative", cli.ErrUsage, *count)
	case !*watch && (*count != 0 || flagSet(fs, "interval")):
		return fmt.Errorf("%w: --interval and --count go with --watch", cli.ErrUsage)
	}
	c, err := api.NewClient(*addr)
	if err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for n := 1; ; n++ {
		code, err := statusOnce(ctx, c, *asJSON, *watch && !*asJSON, stdout)
		if err != nil && !*watch {
			return &cli.ExitError{Code: 3, Err: err}
		}
		if err != nil {
			fmt.Fprintf(stdout, "raftlb status: %v\n", err)
		}
		if !*watch || (*count > 0 && n >= *count) {
			if err != nil {
				code = 3
			}
			return &cli.ExitError{Code: code}
		}
		select {
		case <-ctx.Done():
			return &cli.ExitError{Code: code}
		case <-time.After(*interval):
		}
	}
}

// statusOnce prints one view and returns its verdict's exit code.
func statusOnce(ctx context.Context, c *api.Client, asJSON, clear bool, stdout io.Writer) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, showTimeout)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		return 3, err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return st.Health.Code, enc.Encode(st)
	}
	if clear {
		fmt.Fprint(stdout, "\x1b[H\x1b[2J") // home, clear screen
	}
	return st.Health.Code, api.RenderStatus(stdout, st)
}

// flagSet reports whether the flag was given.
func flagSet(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
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
