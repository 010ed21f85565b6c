// Command raftlb is the raftlb agent and its command-line client.
//
// Every node runs `raftlb agent`; operators use the other subcommands
// against the local agent's admin API.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `raftlb — one agent per node: Raft-replicated LVS direct-routing cluster

Usage:
  raftlb agent   --name NAME --data-dir DIR --bind IP [flags]   run a node
  raftlb join    [--api ADDR] HOST:GOSSIPPORT...                 join the local agent to a cluster
  raftlb leave   [--api ADDR]                                    leave the cluster for good and stop the agent
  raftlb apply   [--api ADDR] -f services.yaml                   submit the desired services
  raftlb status  [--api ADDR] [--json]                           show the cluster status
  raftlb ipvs    [--api ADDR] [--json]                           show this node's IPVS table (ipvsadm -Ln)
  raftlb keygen  [-o FILE]                                       create a gossip encryption key
  raftlb genhash [--server-name NAME] [--verify-tls] URL         print a page's MD5/SHA-256 digests for an http(s) health check
  raftlb tls init --dir DIR                                      create the cluster CA
  raftlb tls cert --dir DIR --name NODE [--ip IP]...             create a node certificate

Run 'raftlb COMMAND -h' for the flags of a command.
`

// errUsage marks a command-line mistake: exit status 2, like flag's.
var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "agent":
		err = runAgent(rest, stderr)
	case "join":
		err = runJoin(rest, stdout, stderr)
	case "leave":
		err = runLeave(rest, stdout, stderr)
	case "apply":
		err = runApply(rest, stdout, stderr)
	case "status":
		err = runStatus(rest, stdout, stderr)
	case "ipvs":
		err = runIPVS(rest, stdout, stderr)
	case "keygen":
		err = runKeygen(rest, stdout, stderr)
	case "genhash":
		err = runGenhash(rest, stdout, stderr)
	case "tls":
		err = runTLS(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "raftlb: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "raftlb: %v\n", err)
		return 2
	default:
		fmt.Fprintf(stderr, "raftlb: %v\n", err)
		return 1
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("raftlb "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses args and turns flag's own errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
