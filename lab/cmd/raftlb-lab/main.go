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
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `raftlb-lab — traffic for the raftlb kernel lab

Usage:
  raftlb-lab serve --name NAME --port PORT [--addr 0.0.0.0]
      answer every TCP connection with "NAME\n", then close it
  raftlb-lab probe --target IP:PORT [--interval 20ms] [--duration 10s | --until-signal]
                   [--timeout 200ms] [--count N] [--out FILE]
      open a new TCP connection every interval and report, as JSON, who
      answered and how long the longest outage lasted
  raftlb-lab arpwatch --vip IP [--iface eth0] [--interval 20ms] [--duration D] [--out FILE]
      ask who-has VIP every interval and report, as JSON, every round in
      which two or more MACs (or none) answered, and the gratuitous ARPs seen
  raftlb-lab garp --ip IP [--iface eth0]
      send one gratuitous ARP for IP, as raftlb does

Run 'raftlb-lab COMMAND -h' for the flags of a command.
`

// errUsage marks a command-line mistake: exit status 2, like flag's.
var errUsage = errors.New("usage")

func main() {
	// SIGTERM and SIGINT end both commands gracefully: serve stops
	// listening, probe stops starting attempts and still writes its report.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = runServe(ctx, rest, stdout, stderr)
	case "garp":
		err = runGARP(rest, stdout, stderr)
	case "probe":
		err = runProbe(ctx, rest, stdout, stderr)
	case "arpwatch":
		err = runARPWatch(ctx, rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "raftlb-lab: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "raftlb-lab: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "raftlb-lab: %v\n", err)
		return 1
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting, so
// that run decides the exit status.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("raftlb-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and rejects positional arguments, which no command
// takes: a stray word is more likely a typo than something to ignore.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
