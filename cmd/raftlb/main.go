// Command raftlb is the raftlb agent and its command-line client.
//
// Every node runs `raftlb agent`; operators use the other subcommands
// against the local agent's admin API.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/raftlb/raftlb/internal/cli"
)

const usage = `raftlb — one agent per node: Raft-replicated LVS direct-routing cluster

Usage:
  raftlb agent   --name NAME --data-dir DIR --bind IP [flags]   run a node
  raftlb join    [--api ADDR] HOST:GOSSIPPORT...                 join the local agent to a cluster
  raftlb leave   [--api ADDR]                                    leave the cluster for good and stop the agent
  raftlb release --data-dir DIR                                  after the agent exited: its VIPs off the interfaces, its IPVS services gone
  raftlb apply   [--api ADDR] [--dry-run] [--allow-empty] -f services.yaml
                                                                 submit the desired services; print what changed
  raftlb spec show  [--api ADDR]                                 print the applied spec as a services file
  raftlb spec clear [--api ADDR]                                 remove every service and VIP
  raftlb status  [--api ADDR] [--json] [--watch]                 show the cluster status; exits 0 ok, 1 degraded, 2 critical
  raftlb node remove [--api ADDR] [--force] NODE                 remove a node that is gone for good (crm_node -R)
  raftlb node standby|unstandby [--api ADDR] NODE                drain NODE (weight 0, never DC while another can be) / bring it back
  raftlb server disable|enable [--api ADDR] SERVICE SERVER       drain one real server (weight 0) / bring it back
  raftlb dc move [--api ADDR] [NODE]                             hand the DC role to NODE (or any node that can direct)
  raftlb ipvs    [--api ADDR] [--json]                           show this node's IPVS table (ipvsadm -Ln)
  raftlb events  [--api ADDR] [--follow] [--json]                show what happened: DC, VIPs, real servers, quorum, fencing
  raftlb fence   [--api ADDR] [--action off|reboot] NODE         have the DC fence NODE with the spec's devices
  raftlb fence confirm [--api ADDR] NODE                         tell the cluster NODE is down (stonith_admin --confirm)
  raftlb fence history [--api ADDR] [--json]                     show the fencing history
  raftlb keygen  [-o FILE]                                       create a gossip encryption key
  raftlb genhash [--server-name NAME] [--verify-tls] URL         print a page's MD5/SHA-256 digests for an http(s) health check
  raftlb tls init --dir DIR                                      create the cluster CA
  raftlb tls cert --dir DIR --name NODE --out NODEDIR [--ip IP]...  create a node's TLS directory

Run 'raftlb COMMAND -h' for the flags of a command.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// raftlb's subcommands; none needs a context of its own.
	cmds := map[string]cli.Command{}
	for name, f := range map[string]func(args []string, stdout, stderr io.Writer) error{
		"agent":   func(args []string, _, stderr io.Writer) error { return runAgent(args, stderr) },
		"join":    runJoin,
		"leave":   runLeave,
		"release": runRelease,
		"apply":   runApply,
		"spec":    runSpec,
		"node":    runNode,
		"dc":      runDC,
		"server":  runServer,
		"status":  runStatus,
		"ipvs":    runIPVS,
		"events":  runEvents,
		"fence":   runFence,
		"keygen":  runKeygen,
		"genhash": runGenhash,
		"tls":     runTLS,
	} {
		cmds[name] = func(_ context.Context, args []string, stdout, stderr io.Writer) error { return f(args, stdout, stderr) }
	}
	return cli.Run(context.Background(), "raftlb", usage, cmds, args, stdout, stderr)
}

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlagSet("raftlb "+name, stderr)
}

// parseFlags parses args and turns flag's own errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error { return cli.ParseFlags(fs, args) }

// stringList is a repeatable string flag.
type stringList []string

// argvList is a repeatable flag whose every value is a program with its
// arguments: an absolute path alone, or a JSON array of strings (the
// program first), as Docker's exec form; no shell ever parses it. A config
// file gives the array as a YAML list.
type argvList [][]string

func (l *argvList) String() string { return fmt.Sprint([][]string(*l)) }
func (l *argvList) Set(v string) error {
	argv := []string{v}
	if strings.HasPrefix(strings.TrimSpace(v), "[") {
		argv = nil
		if err := json.Unmarshal([]byte(v), &argv); err != nil {
			return fmt.Errorf("want a program's absolute path, or a JSON array of strings (the program and its arguments): %w", err)
		}
		if len(argv) == 0 {
			return errors.New("an empty array: want the program first")
		}
	}
	for _, a := range argv {
		if strings.ContainsRune(a, 0) {
			return fmt.Errorf("%q: an argument cannot hold a NUL byte", a)
		}
	}
	*l = append(*l, argv)
	return nil
}

func (s *stringList) String() string { return fmt.Sprint([]string(*s)) }
func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
