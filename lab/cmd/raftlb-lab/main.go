// Command raftlb-lab is the kernel lab's stand-in for real traffic: a tiny
// service that every real server runs on the VIP port, and a client that
// measures what a user of the VIP would see during a scenario.
//
// It runs inside the lab VM (see lab/README.md), in the network namespaces
// the lab tests create. Besides the standard library it uses only raw
// sockets (golang.org/x/sys/unix) and raftlb's own gratuitous-ARP sender.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/raftlb/raftlb/internal/cli"
)

const usage = `raftlb-lab — traffic for the raftlb kernel lab

Usage:
  raftlb-lab serve --name NAME --port PORT [--addr 0.0.0.0] [--echo]
      answer every TCP connection with "NAME\n", then close it; with --echo,
      keep it open and answer every line the client sends with "NAME LINE\n"
  raftlb-lab probe --target IP:PORT [--interval 20ms] [--duration 10s | --until-signal]
                   [--timeout 200ms] [--count N] [--out FILE]
      open a new TCP connection every interval and report, as JSON, who
      answered and how long the longest outage lasted
  raftlb-lab hold --target IP:PORT [--conns 9] [--interval 200ms] [--timeout 30s]
                  [--duration 10s | --until-signal] [--count N] [--out FILE]
      hold connections open to a serve --echo, exchange a line on each every
      interval, and report, as JSON, whether each survived: no reset, and
      every answer from the server that greeted it
  raftlb-lab arpwatch --vip IP [--iface eth0] [--interval 20ms] [--duration D] [--out FILE]
      ask who-has VIP every interval and report, as JSON, every round in
      which two or more MACs (or none) answered, and the gratuitous ARPs seen
  raftlb-lab fetch --url URL
      GET the URL and print the body (an agent's /metrics, from its namespace)
  raftlb-lab garp --ip IP [--iface eth0]
      send one gratuitous ARP for the IPv4 address IP (an ARP announcement,
      built by the lab, not by raftlb)

Called as fence_lab (a symlink), it is the lab's fence agent: the
fence-agents protocol on stdin (action, plug = a lab namespace, fail=1 for
a broken device); off kills the namespace's processes and downs its eth0,
on boots it afresh, status answers from the link.

Run 'raftlb-lab COMMAND -h' for the flags of a command.
`

func main() {
	// SIGTERM and SIGINT end the commands gracefully: serve stops
	// listening, probe, hold and arpwatch stop and still write their
	// reports.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	var code int
	if filepath.Base(os.Args[0]) == FenceAgentName {
		// Called as the lab's fence agent (a symlink), by raftlb.
		code = runFenceAgent(ctx, os.Stdin, os.Stdout, os.Stderr)
	} else {
		code = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return cli.Run(ctx, "raftlb-lab", usage, map[string]cli.Command{
		"serve": runServe,
		"garp": func(_ context.Context, args []string, stdout, stderr io.Writer) error {
			return runGARP(args, stdout, stderr)
		},
		"probe":    runProbe,
		"hold":     runHold,
		"arpwatch": runARPWatch,
		"fetch":    runFetch,
	}, args, stdout, stderr)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlagSet("raftlb-lab "+name, stderr)
}

// parseFlags parses args and rejects positional arguments, which no command
// takes: a stray word is more likely a typo than something to ignore.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", cli.ErrUsage, fs.Arg(0))
	}
	return nil
}
