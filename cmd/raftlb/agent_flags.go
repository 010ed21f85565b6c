package main

// The agent's flags, their validation, and the configuration checked
// against the host (addresses, TLS material, users) that the start needs.

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/internal/procrun"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/resources"
)

type agentFlags struct {
	name, dataDir, bind, apiAddr, iface, dataplane, config string
	keyFile, tlsDir, logLevel                              string
	raftPort, gossipPort, bootstrapExpect, maxVoters       int
	insecure, witness, apiTCPLoopback                      bool
	insecureNetns                                          string
	join                                                   stringList
	timing                                                 cluster.Timing
	snapshotThreshold                                      uint64
	garpCount                                              int
	garpRefresh                                            time.Duration
	vipLease                                               time.Duration
	arpLease                                               time.Duration
	watchdog                                               string
	watchdogTimeout                                        time.Duration
	execDirs, fenceAgentDirs, fenceSecretDirs              stringList
	hookDirs                                               stringList
	ocfRoot                                                string
	execUser, fenceUser                                    string
	execMaxProcs                                           int
	notify                                                 argvList
	mailTo                                                 stringList
	notifyTimeout, mailWindow                              time.Duration
	notifyQueue                                            int
	smtpRelay, mailFrom                                    string
	httpAddr                                               string
	httpMTLS, httpPublic                                   bool
	ipvsSync                                               bool
	ipvsSyncIface                                          string
	ipvsSyncID                                             int
}

// newAgentFlagSet defines the agent's flags. The config file's keys are
// these flags' names, so parseConfigFile checks a file against this set.
func newAgentFlagSet(stderr io.Writer) (*flag.FlagSet, *agentFlags) {
	fs := newFlagSet("agent", stderr)
	f := &agentFlags{timing: cluster.DefaultTiming()}
	fs.StringVar(&f.name, "name", "", "this node's name (unique in the cluster; the certificate's name)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for Raft state")
	fs.StringVar(&f.bind, "bind", "", "this node's IP address: gossip, Raft and real-server traffic use it")
	fs.IntVar(&f.raftPort, "raft-port", 7947, "TCP port for Raft (mutual TLS)")
	fs.IntVar(&f.gossipPort, "gossip-port", 7946, "TCP and UDP port for gossip")
	fs.StringVar(&f.apiAddr, "api", api.DefaultAddr, "admin API: unix:///path (mode 0600) or IP:PORT")
	fs.Var(&f.join, "join", "HOST:GOSSIPPORT of a cluster member to join at start (repeatable; retried until it works)")
	fs.IntVar(&f.bootstrapExpect, "bootstrap-expect", 0, "bootstrap a new cluster once this many servers have found each other (0: only join)")
	fs.IntVar(&f.maxVoters, "max-voters", cluster.DefaultMaxVoters, "Raft voters; further nodes join as non-voters")
	fs.StringVar(&f.iface, "interface", "", "interface the DC puts VIPs on when the services file names none")
	fs.StringVar(&f.dataplane, "dataplane", "kernel", "kernel (IPVS, addresses, ARP), fake (the director against in-memory fakes, for tests) or none (control plane only)")
	fs.StringVar(&f.watchdog, "watchdog", "", "watchdog device (/dev/watchdog) armed while this node is DC and fed only after verifying its leadership: a hung agent resets the machine")
	fs.DurationVar(&f.watchdogTimeout, "watchdog-timeout", 5*time.Second, "the watchdog's timeout (whole seconds, at least the VIP lease)")
	fs.BoolVar(&f.witness, "witness", false, "a voter that never directs and is no real server, without a data plane: the third vote of a two-node cluster")
	fs.StringVar(&f.config, "config", "", "YAML file with these settings (keys are the flag names); flags override it")
	fs.StringVar(&f.keyFile, "key-file", "", "gossip encryption key (create with: raftlb keygen -o FILE)")
	fs.StringVar(&f.tlsDir, "tls-dir", "", "directory with ca.pem, NAME.pem and NAME-key.pem (create with: raftlb tls)")
	fs.BoolVar(&f.insecure, "insecure", false, "run without gossip encryption and TLS (local trials only: every address loopback, or inside --insecure-netns)")
	fs.StringVar(&f.insecureNetns, "insecure-netns", "", "with --insecure: the network namespace (ip netns NAME) the agent must run in, for trials on non-loopback addresses")
	fs.BoolVar(&f.apiTCPLoopback, "api-tcp-loopback", false, "allow --api on a loopback TCP address: every local user then controls the cluster")
	fs.Var(&f.execDirs, "exec-dir", "directory the spec's exec health checks may run programs from (repeatable; none: no exec check runs on this node)")
	fs.StringVar(&f.execUser, "exec-user", "nobody", "the unprivileged user exec health checks run as")
	fs.IntVar(&f.execMaxProcs, "exec-max-procs", health.DefaultExecProcs, "exec health checks running at once on this node")
	fs.Var(&f.fenceAgentDirs, "fence-agent-dir", "directory the spec's fence devices may run fence_* agents from (repeatable; default "+fencing.DefaultAgentDir+")")
	fs.StringVar(&f.fenceUser, "fence-user", "", "the user fence agents run as (empty: the agent's own, root); agents that reach their device over the network need no root")
	fs.Var(&f.fenceSecretDirs, "fence-secret-dir", "directory the spec's fence options may read {file: …} secrets from (repeatable; default "+fencing.DefaultSecretDir+")")
	fs.StringVar(&f.ocfRoot, "ocf-root", resources.DefaultOCFRoot, "OCF_ROOT: the spec's resources run OCF agents from its resource.d/PROVIDER/ only (Debian's resource-agents)")
	fs.Var(&f.hookDirs, "hook-dir", "directory the spec's resources may run commands (start/stop/monitor hooks) from (repeatable; none: no command runs on this node)")
	fs.Var(&f.notify, "notify", "program run for every event (DC, VIPs, real servers, quorum, fencing, resources) with the event in RAFTLB_* variables: an absolute path, or a JSON array of the program and its arguments; no shell (repeatable)")
	fs.DurationVar(&f.notifyTimeout, "notify-timeout", events.DefaultScriptTimeout, "a notify program still running after this is killed with its process group")
	fs.IntVar(&f.notifyQueue, "notify-queue", events.DefaultScriptQueue, "events waiting for a notify program; more are dropped, counted and logged")
	fs.StringVar(&f.smtpRelay, "smtp-relay", "", "HOST:PORT of an SMTP relay to mail the events through (with --mail-from and --mail-to)")
	fs.StringVar(&f.mailFrom, "mail-from", "", "sender of the mail alerts")
	fs.Var(&f.mailTo, "mail-to", "recipient of the mail alerts (repeatable)")
	fs.DurationVar(&f.mailWindow, "mail-window", events.DefaultMailWindow, "events within this long of the first go in one mail")
	fs.StringVar(&f.httpAddr, "http", "", "IP:PORT for Prometheus /metrics and the live status page (off when empty; loopback unless --http-mtls or --http-public)")
	fs.BoolVar(&f.httpMTLS, "http-mtls", false, "on --http require client certificates of the cluster CA")
	fs.BoolVar(&f.httpPublic, "http-public", false, "allow --http on a non-loopback address without TLS: anyone who reaches it sees the cluster's layout")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.DurationVar(&f.timing.RaftHeartbeatTimeout, "raft-heartbeat-timeout", f.timing.RaftHeartbeatTimeout, "follower timeout before an election")
	fs.DurationVar(&f.timing.RaftElectionTimeout, "raft-election-timeout", f.timing.RaftElectionTimeout, "candidate timeout")
	fs.DurationVar(&f.timing.RaftLeaderLease, "raft-leader-lease", f.timing.RaftLeaderLease, "how long a DC acts without hearing from a quorum (must be below the heartbeat timeout)")
	fs.DurationVar(&f.timing.RaftCommitTimeout, "raft-commit-timeout", f.timing.RaftCommitTimeout, "Raft commit timeout")
	fs.DurationVar(&f.timing.GossipProbeInterval, "gossip-probe-interval", f.timing.GossipProbeInterval, "failure-detector probe interval")
	fs.DurationVar(&f.timing.GossipProbeTimeout, "gossip-probe-timeout", f.timing.GossipProbeTimeout, "failure-detector probe timeout")
	fs.DurationVar(&f.timing.GossipInterval, "gossip-interval", f.timing.GossipInterval, "gossip interval")
	fs.IntVar(&f.timing.GossipSuspicionMult, "gossip-suspicion-mult", f.timing.GossipSuspicionMult, "suspicion timeout multiplier")
	fs.Uint64Var(&f.snapshotThreshold, "snapshot-threshold", 0, "Raft log entries between snapshots (0: Raft's default)")
	fs.IntVar(&f.garpCount, "garp-count", 3, "gratuitous ARPs (for IPv6: unsolicited neighbour advertisements) per VIP when this node becomes DC")
	fs.DurationVar(&f.garpRefresh, "garp-refresh", 5*time.Second, "repeat a gratuitous ARP (IPv6: neighbour advertisement) per VIP this often while DC (negative: never)")
	fs.DurationVar(&f.vipLease, "vip-lease", quorum.DefaultLease, "lifetime of a VIP on the DC's interface, renewed after each verification of leadership; the kernel drops it when the agent dies or hangs (whole seconds)")
	fs.BoolVar(&f.ipvsSync, "ipvs-sync", true, "synchronise IPVS connections (the kernel's sync daemon: master on the DC, backup elsewhere) so established connections survive a change of DC")
	fs.StringVar(&f.ipvsSyncIface, "ipvs-sync-interface", "", "interface the connection sync's multicast uses (default: the one holding --bind)")
	fs.IntVar(&f.ipvsSyncID, "ipvs-sync-id", 0, "sync id of this cluster's connection sync, 1 to 255, the same on every node (0: derived from the cluster CA's certificate)")
	fs.DurationVar(&f.arpLease, "arp-lease", quorum.DefaultAnswerLease, "how long the DC's kernel answers ARP (IPv6: neighbour solicitations) for a VIP after the last verification of leadership, enforced to the millisecond by an nftables table of raftlb's own; the VIP lease is its backstop (0: the VIP lease alone, and a takeover waits it out)")
	return fs, f
}

// parseAgentArgs parses the agent's flags, then its config file, flags
// taking precedence.
func parseAgentArgs(args []string, stderr io.Writer) (*agentFlags, error) {
	fs, f := newAgentFlagSet(stderr)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: agent takes no arguments (got %q)", cli.ErrUsage, fs.Args())
	}
	if f.config != "" {
		data, err := os.ReadFile(f.config)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
		settings, err := parseConfigFile(data, fs)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", cli.ErrUsage, f.config, err)
		}
		if err := applyConfigFile(fs, settings); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", cli.ErrUsage, f.config, err)
		}
	}
	if err := (quorum.Lease{Duration: f.vipLease}).Validate(); err != nil {
		return nil, fmt.Errorf("%w: --vip-lease: %v", cli.ErrUsage, err)
	}
	if err := f.lease().Validate(); err != nil {
		return nil, fmt.Errorf("%w: --arp-lease: %v", cli.ErrUsage, err)
	}
	if f.dataplane != "kernel" && f.dataplane != "fake" && f.dataplane != "none" {
		return nil, fmt.Errorf("%w: --dataplane %q: want kernel, fake or none", cli.ErrUsage, f.dataplane)
	}
	timeoutSet := false
	fs.Visit(func(fl *flag.Flag) { timeoutSet = timeoutSet || fl.Name == "watchdog-timeout" })
	switch {
	case f.watchdog == "" && timeoutSet:
		return nil, fmt.Errorf("%w: --watchdog-timeout without --watchdog: name the device", cli.ErrUsage)
	case f.watchdog != "" && (f.watchdogTimeout < f.vipLease || f.watchdogTimeout%time.Second != 0):
		return nil, fmt.Errorf("%w: --watchdog-timeout %s: whole seconds, at least the VIP lease (%s), or a healthy DC would reset", cli.ErrUsage, f.watchdogTimeout, f.vipLease)
	case f.watchdog != "" && !filepath.IsAbs(f.watchdog):
		return nil, fmt.Errorf("%w: --watchdog %q: want the device's absolute path", cli.ErrUsage, f.watchdog)
	}
	if f.witness {
		set := false
		fs.Visit(func(fl *flag.Flag) { set = set || fl.Name == "dataplane" })
		if set && f.dataplane != "none" {
			return nil, fmt.Errorf("%w: --witness runs without a data plane: drop --dataplane %s", cli.ErrUsage, f.dataplane)
		}
		f.dataplane = "none"
	}
	if err := procrun.CheckDirs("--exec-dir", f.execDirs); err != nil {
		return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if err := procrun.CheckDirs("--fence-agent-dir", f.fenceAgentDirs); err != nil {
		return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if err := procrun.CheckDirs("--fence-secret-dir", f.fenceSecretDirs); err != nil {
		return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if err := procrun.CheckDirs("--hook-dir", f.hookDirs); err != nil {
		return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	// The default root may be missing (resource-agents not installed:
	// a spec's OCF resources are then refused at apply); one named must
	// exist.
	if !filepath.IsAbs(f.ocfRoot) || filepath.Clean(f.ocfRoot) != f.ocfRoot {
		return nil, fmt.Errorf("%w: --ocf-root %q: want a clean absolute path", cli.ErrUsage, f.ocfRoot)
	}
	if f.ocfRoot != resources.DefaultOCFRoot {
		if err := procrun.CheckDirs("--ocf-root", []string{f.ocfRoot}); err != nil {
			return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
	}
	if err := f.checkSync(fs); err != nil {
		return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if f.execMaxProcs < 1 || f.execMaxProcs > 1024 {
		return nil, fmt.Errorf("%w: --exec-max-procs %d: want 1 to 1024", cli.ErrUsage, f.execMaxProcs)
	}
	if f.httpAddr != "" {
		if err := checkHTTPAddr(f.httpAddr, f.httpMTLS, f.httpPublic, f.insecure); err != nil {
			return nil, fmt.Errorf("%w: %v", cli.ErrUsage, err)
		}
	} else if f.httpMTLS || f.httpPublic {
		return nil, fmt.Errorf("%w: --http-mtls and --http-public go with --http", cli.ErrUsage)
	}
	for _, argv := range f.notify {
		if err := checkProgram(argv[0]); err != nil {
			return nil, fmt.Errorf("%w: --notify: %v", cli.ErrUsage, err)
		}
	}
	if f.notifyTimeout <= 0 || f.notifyTimeout > 10*time.Minute || f.notifyQueue < 1 || f.notifyQueue > 10000 {
		return nil, fmt.Errorf("%w: --notify-timeout %s, --notify-queue %d: want 0 < timeout ≤ 10m and 1 ≤ queue ≤ 10000", cli.ErrUsage, f.notifyTimeout, f.notifyQueue)
	}
	if f.smtpRelay != "" || f.mailFrom != "" || len(f.mailTo) > 0 {
		if err := events.CheckMail(f.mail()); err != nil {
			return nil, fmt.Errorf("%w: --smtp-relay, --mail-from, --mail-to: %v", cli.ErrUsage, err)
		}
		if f.mailWindow < time.Second || f.mailWindow > time.Hour {
			return nil, fmt.Errorf("%w: --mail-window %s: want 1s to 1h", cli.ErrUsage, f.mailWindow)
		}
	}
	for _, j := range f.join {
		if _, err := netip.ParseAddrPort(j); err != nil {
			if _, _, err := net.SplitHostPort(j); err != nil {
				return nil, fmt.Errorf("%w: --join %q: want HOST:GOSSIPPORT", cli.ErrUsage, j)
			}
		}
	}
	return f, nil
}

func (f *agentFlags) mail() events.Mail {
	return events.Mail{Relay: f.smtpRelay, From: f.mailFrom, To: f.mailTo, Window: f.mailWindow}
}

// checkProgram checks a program of the agent's own configuration (a notify
// script): an absolute path to an executable file.
func checkProgram(p string) error {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return fmt.Errorf("%q: want a clean absolute path", p)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("%w: --log-level %q: want debug, info, warn or error", cli.ErrUsage, s)
	}
	return l, nil
}

// agentConfig is what the start needs beyond the flags, checked against
// the host: the cluster node's configuration with its TLS material, the
// admin API's address, and the users programs run as.
type agentConfig struct {
	cluster   cluster.Config
	api       api.Addr
	execUser  *syscall.Credential
	fenceUser *syscall.Credential // nil: the agent's own, root
}

// newAgentConfig checks the flags that name something on this host and
// loads what they name. Nothing is started: a refused start leaves no
// trace.
func newAgentConfig(f *agentFlags, logger *slog.Logger) (agentConfig, error) {
	var c agentConfig
	bind, err := netip.ParseAddr(f.bind)
	if err != nil {
		return c, fmt.Errorf("%w: --bind %q: want this node's IP address", cli.ErrUsage, f.bind)
	}
	c.api, err = api.ParseAddr(f.apiAddr)
	if err != nil {
		return c, fmt.Errorf("%w: --api: %v", cli.ErrUsage, err)
	}
	switch {
	case c.api.Unix != "":
	case !c.api.TCP.Addr().IsLoopback():
		return c, fmt.Errorf("%w: --api %s: the admin API has no authentication over TCP; use a unix socket (the default, mode 0600), or a loopback address with --api-tcp-loopback", cli.ErrUsage, c.api)
	case !f.apiTCPLoopback:
		return c, fmt.Errorf("%w: --api %s: on TCP every local user can control the cluster; say so with --api-tcp-loopback, or use a unix socket (the default)", cli.ErrUsage, c.api)
	default:
		logger.Warn("the admin API listens on loopback TCP without authentication: every local user controls the cluster", "api", c.api.String())
	}
	if f.insecure {
		if err := insecureAllowed(bind, f.insecureNetns, "/run/netns"); err != nil {
			return c, fmt.Errorf("%w: --insecure: %v", cli.ErrUsage, err)
		}
	} else if f.insecureNetns != "" {
		return c, fmt.Errorf("%w: --insecure-netns goes with --insecure", cli.ErrUsage)
	}
	c.cluster = cluster.Config{
		Name: f.name, BindAddr: bind, RaftPort: f.raftPort, GossipPort: f.gossipPort,
		DataDir: f.dataDir, BootstrapExpect: f.bootstrapExpect, MaxVoters: f.maxVoters,
		Insecure: f.insecure, Dataplane: f.dataplane, Witness: f.witness, Timing: f.timing,
		SnapshotThreshold: f.snapshotThreshold, Logger: logger,
	}
	if !f.insecure {
		if f.keyFile == "" || f.tlsDir == "" {
			return c, fmt.Errorf("%w: --key-file and --tls-dir are required (create them with `raftlb keygen` and `raftlb tls`), or pass --insecure for a local trial", cli.ErrUsage)
		}
		keys, err := cluster.LoadKeyRing(f.keyFile)
		if err != nil {
			return c, err
		}
		c.cluster.GossipKey, c.cluster.GossipKeys = keys[0], keys[1:]
		if c.cluster.TLS, err = loadAgentTLS(f.tlsDir, f.name, logger); err != nil {
			return c, err
		}
	}
	if err := c.cluster.Validate(); err != nil {
		return c, fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if len(f.execDirs) > 0 { // no exec check runs without one
		if c.execUser, err = lookupUser(f.execUser, "exec health checks", logger); err != nil {
			return c, fmt.Errorf("%w: --exec-user: %v", cli.ErrUsage, err)
		}
	}
	if f.fenceUser != "" {
		if c.fenceUser, err = lookupUser(f.fenceUser, "fence agents", logger); err != nil {
			return c, fmt.Errorf("%w: --fence-user: %v", cli.ErrUsage, err)
		}
	}
	return c, nil
}

// lease is the VIP lease the flags ask for: the address lifetime and the
// answer lease.
func (f *agentFlags) lease() quorum.Lease {
	return quorum.Lease{Duration: f.vipLease, Answer: f.arpLease}
}
