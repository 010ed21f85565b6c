package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/internal/procrun"
	"github.com/raftlb/raftlb/internal/retry"
	"github.com/raftlb/raftlb/quorum"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/status"
	"github.com/raftlb/raftlb/watchdog"
	"github.com/raftlb/raftlb/webui"
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

// checkIPVS fails fast on a host whose kernel has no IPVS: the data plane
// could not work, and saying so at start beats failing at the first
// takeover.
func checkIPVS() error {
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		return errors.New("this kernel has no IPVS (/proc/net/ip_vs is missing): load it with `modprobe ip_vs`, or run with --dataplane none for the control plane only")
	}
	return nil
}

func runAgent(args []string, stderr io.Writer) error {
	f, err := parseAgentArgs(args, stderr)
	if err != nil {
		return err
	}
	level, err := parseLevel(f.logLevel)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	// SIGHUP (systemctl reload) is caught from the start: its default
	// would end the agent. It is acted on once the node runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	bind, err := netip.ParseAddr(f.bind)
	if err != nil {
		return fmt.Errorf("%w: --bind %q: want this node's IP address", cli.ErrUsage, f.bind)
	}
	apiAddr, err := api.ParseAddr(f.apiAddr)
	if err != nil {
		return fmt.Errorf("%w: --api: %v", cli.ErrUsage, err)
	}
	switch {
	case apiAddr.Unix != "":
	case !apiAddr.TCP.Addr().IsLoopback():
		return fmt.Errorf("%w: --api %s: the admin API has no authentication over TCP; use a unix socket (the default, mode 0600), or a loopback address with --api-tcp-loopback", cli.ErrUsage, apiAddr)
	case !f.apiTCPLoopback:
		return fmt.Errorf("%w: --api %s: on TCP every local user can control the cluster; say so with --api-tcp-loopback, or use a unix socket (the default)", cli.ErrUsage, apiAddr)
	default:
		logger.Warn("the admin API listens on loopback TCP without authentication: every local user controls the cluster", "api", apiAddr.String())
	}
	if f.insecure {
		if err := insecureAllowed(bind, f.insecureNetns, "/run/netns"); err != nil {
			return fmt.Errorf("%w: --insecure: %v", cli.ErrUsage, err)
		}
	} else if f.insecureNetns != "" {
		return fmt.Errorf("%w: --insecure-netns goes with --insecure", cli.ErrUsage)
	}
	cfg := cluster.Config{
		Name: f.name, BindAddr: bind, RaftPort: f.raftPort, GossipPort: f.gossipPort,
		DataDir: f.dataDir, BootstrapExpect: f.bootstrapExpect, MaxVoters: f.maxVoters,
		Insecure: f.insecure, Dataplane: f.dataplane, Witness: f.witness, Timing: f.timing,
		SnapshotThreshold: f.snapshotThreshold, Logger: logger,
	}
	if !f.insecure {
		if f.keyFile == "" || f.tlsDir == "" {
			return fmt.Errorf("%w: --key-file and --tls-dir are required (create them with `raftlb keygen` and `raftlb tls`), or pass --insecure for a local trial", cli.ErrUsage)
		}
		keys, err := cluster.LoadKeyRing(f.keyFile)
		if err != nil {
			return err
		}
		cfg.GossipKey, cfg.GossipKeys = keys[0], keys[1:]
		if cfg.TLS, err = loadAgentTLS(f.tlsDir, f.name, logger); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	var execUser *syscall.Credential
	if len(f.execDirs) > 0 { // no exec check runs without one
		if execUser, err = lookupUser(f.execUser, "exec health checks", logger); err != nil {
			return fmt.Errorf("%w: --exec-user: %v", cli.ErrUsage, err)
		}
	}
	var fenceUser *syscall.Credential // the agent's own: root
	if f.fenceUser != "" {
		if fenceUser, err = lookupUser(f.fenceUser, "fence agents", logger); err != nil {
			return fmt.Errorf("%w: --fence-user: %v", cli.ErrUsage, err)
		}
	}

	// Start order: the real-server side first (a restarted agent takes any
	// VIP it left on the interface back to lo before anything else), then
	// replicated state, cluster node, director, admin API, joins.
	dp, closeDataplane, err := startDataplane(f, logger)
	if err != nil {
		return err
	}
	defer closeDataplane()
	state := fsm.NewWith(fsm.Options{Logger: logger.With("component", "fsm")})
	node, err := cluster.Start(cfg, state)
	if err != nil {
		if dp != nil {
			_ = dp.RS.Shutdown()
		}
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	go reloadOnHUP(ctx, hup, node, f, logger)
	// The director runs on every node: with a data plane it holds the VIPs
	// and the IPVS table while DC; without one it still runs the DC's
	// membership duties.
	bus := events.NewBus(f.name, events.DefaultKeep)
	// The registry's sources are read at scrape time; the director is
	// made below and reports to m.
	var dir *director.Director
	reg, m, err := newRegistry(metricSources(node, func() *director.Director { return dir }, dp))
	if err != nil {
		_ = node.Shutdown()
		return err
	}
	// What the last run may have left running is stopped before this
	// node reports that it let go (resources.json).
	resGroup, err := resources.NewGroup(resources.NewRunner(resources.Config{Logger: logger, Node: f.name, OCFRoot: f.ocfRoot, HookDirs: f.hookDirs}),
		resources.GroupConfig{Logger: logger, StateFile: filepath.Join(f.dataDir, "resources.json")})
	if err != nil {
		_ = node.Shutdown()
		return fmt.Errorf("%w (make sure none of its resources runs on this node, then remove the file)", err)
	}
	dir = director.New(node, dp, director.Config{
		GARPCount: f.garpCount, GARPRefresh: f.garpRefresh, Lease: quorum.Lease{Duration: f.vipLease}, Events: bus, Metrics: m,
		Exec:   health.NewExec(f.execDirs, execUser, f.execMaxProcs),
		Fencer: fencing.NewRunner(fencing.Config{Logger: logger, Dirs: f.fenceAgentDirs, SecretDirs: f.fenceSecretDirs, User: fenceUser}), Watchdog: openWatchdog(f), Logger: logger,
		Resources: resGroup,
	})
	// The status view asks the node, the replicated state and, for the
	// health checks, this node's director while DC or the DC over RPC.
	var kernel status.KernelFunc
	if dp != nil {
		kernel = func(vip netip.Addr) status.Kernel {
			iface, onIface, onLo := dp.RS.Where(vip)
			return status.Kernel{Interface: iface, OnInterface: onIface, OnLo: onLo}
		}
	}
	view := status.NewSource(node, dir.Health, kernel).WithResources(dir.Resources)
	node.SetSpecCheck(dir.CheckSpec)
	dirCtx, stopDirector := context.WithCancel(context.Background())
	dirDone := make(chan struct{})
	go func() {
		defer close(dirDone)
		_ = dir.Run(dirCtx)
	}()
	ln, err := api.Listen(apiAddr)
	if err != nil {
		stopDirector()
		<-dirDone
		_ = node.Shutdown()
		return err
	}
	left := make(chan struct{})
	var leftOnce sync.Once
	srv := api.NewServer(agentAPI{Node: node, view: view}, func() { leftOnce.Do(func() { close(left) }) }, logger)
	if dp != nil {
		srv.SetDataplane(dir)
	}
	srv.SetFencing(dir)
	srv.SetEvents(bus)
	// Off the DC's critical path: each subscriber has its own queue. They
	// outlive the director, so a graceful stop's events go out too.
	go events.WatchQuorum(ctx, bus, time.Second, func() bool { return node.View().Quorum })
	stopDCWatch := node.ObserveDC(events.NewDCWatch(bus).Saw)
	defer stopDCWatch()
	notifyCtx, stopNotify := context.WithCancel(context.Background())
	var notifiers sync.WaitGroup
	for _, argv := range f.notify {
		notifiers.Go(func() {
			events.RunScript(notifyCtx, bus, events.Script{Argv: argv, Timeout: f.notifyTimeout, Queue: f.notifyQueue}, logger)
		})
	}
	if f.smtpRelay != "" {
		notifiers.Go(func() { events.RunMail(notifyCtx, bus, f.mail(), logger) })
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.Info("admin API listening", "api", apiAddr.String())
	sd := notifier{logger: logger}
	go sd.run(ctx, dir.StartedUp(), node.View, dir.Beat)
	go countEvents(ctx, bus, m)
	var web *webServer
	if f.httpAddr != "" {
		var tlsConf *tls.Config
		if f.httpMTLS {
			tlsConf = node.ServerTLS()
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", metricsHandler(reg, logger))
		page := webui.Sources{Status: view.Status, Events: bus.Recent}
		if dp != nil {
			page.IPVS = dp.IPVS.Services
		}
		mux.Handle("/", webui.Handler(page))
		if web, err = startWeb(f.httpAddr, tlsConf, mux, logger); err != nil {
			logger.Error("not serving --http", "err", err)
		}
	}
	if len(f.join) > 0 {
		go joinAtStart(ctx, node, f.join, logger)
	}

	select {
	case <-ctx.Done():
		logger.Info("signal received, stopping")
	case <-left:
		logger.Info("left the cluster, stopping")
	case err = <-serveErr:
		logger.Error("admin API failed", "err", err)
	}

	// Shutdown order, reverse of start, arranged so a graceful stop of the
	// DC fails no client request:
	//  1. stop taking admin requests;
	//  2. hand DC duties to another voter: it claims the VIP and sends
	//     gratuitous ARP while this node still answers;
	//  3. stop the director: it gives the VIPs back to lo and removes its
	//     IPVS services;
	//  4. drain: tell the DC this agent is stopping, so it sends this node
	//     no new connections (weight 0) while the ones in flight here
	//     finish; removing a real server outright makes the DC's kernel
	//     reset a handshake in flight to it;
	//  5. leave gossip, so the DC drops this node from its table at once,
	//     and give it a moment to do so;
	//  6. take the VIPs off lo and restore the sysctls;
	//  7. stop Raft and gossip, then remove the socket.
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stopped := make(chan struct{})
	defer close(stopped)
	go shutdownWatchdog(stopped, stderr, logger)
	sd.send("STOPPING=1\nSTATUS=stopping: handing DC duties over")
	_ = srv.Shutdown(shutCtx)
	web.shutdown(shutCtx)
	node.HandOver()
	stopDirector()
	<-dirDone
	stopNotify()
	notifiers.Wait()
	logger.Info("stopping: director stopped; draining: no new connections to this node")
	node.Drain()
	if dp != nil {
		time.Sleep(drainDelay)
	}
	logger.Info("stopping: leaving gossip")
	node.LeaveGossip()
	if dp != nil {
		time.Sleep(drainDelay)
		if rerr := dp.RS.Shutdown(); rerr != nil {
			err = errors.Join(err, rerr)
		}
		logger.Info("stopping: VIPs removed, sysctls restored")
	}
	if nerr := node.Shutdown(); nerr != nil {
		err = errors.Join(err, nerr)
	}
	logger.Info("stopped")
	if apiAddr.Unix != "" {
		_ = os.Remove(apiAddr.Unix)
	}
	return err
}

// agentAPI is what the admin API serves: the cluster node's operations and
// the status view.
type agentAPI struct {
	*cluster.Node
	view *status.Source
}

func (a agentAPI) Status() status.Status { return a.view.Status() }

func (a agentAPI) Spec() fsm.Spec { return a.Node.FSM().Spec() }

func (a agentAPI) State() fsm.State { return a.Node.FSM().State() }

func (a agentAPI) WaitForSpec(ctx context.Context, v uint64) error {
	return a.Node.FSM().WaitForSpec(ctx, v)
}

// startDataplane opens the data plane --dataplane asks for: the kernel's
// (IPVS, addresses, ARP), the recording fakes (the whole director runs,
// nothing reaches the kernel: for tests of real agent processes), or none
// (nil). The real-server side starts at once: a restarted agent takes any
// VIP it left on the interface back to lo before anything else.
// openWatchdog opens --watchdog for a term that takes the VIPs; nil
// without one.
func openWatchdog(f *agentFlags) func() (director.Watchdog, error) {
	if f.watchdog == "" {
		return nil
	}
	return func() (director.Watchdog, error) {
		d, err := watchdog.Open(f.watchdog, f.watchdogTimeout)
		if err != nil {
			return nil, err
		}
		return d, nil
	}
}

func startDataplane(f *agentFlags, logger *slog.Logger) (*director.Dataplane, func(), error) {
	switch f.dataplane {
	case "none":
		return nil, func() {}, nil
	case "fake":
		iface := f.iface
		if iface == "" {
			iface = "eth0"
		}
		dp := &director.Dataplane{
			RS:   realserver.New(realserver.NewFake(iface), realserver.Config{Interface: iface, StateFile: filepath.Join(f.dataDir, "vips.json"), Lease: f.vipLease, Logger: logger}),
			IPVS: dataplane.NewFakeIPVS(),
			ARP:  &dataplane.FakeARP{},
		}
		if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
			return nil, nil, fmt.Errorf("create data dir: %w", err)
		}
		logger.Warn("FAKE DATA PLANE: the director runs against in-memory fakes; no VIP, IPVS rule or ARP reaches the kernel", "interface", iface)
		if err := dp.RS.Start(); err != nil {
			return nil, nil, err
		}
		return dp, func() {}, nil
	}
	if err := checkIPVS(); err != nil {
		return nil, nil, err
	}
	rs := realserver.New(realserver.Netlink{}, realserver.Config{Interface: f.iface, StateFile: filepath.Join(f.dataDir, "vips.json"), Lease: f.vipLease, Logger: logger})
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := rs.Start(); err != nil {
		return nil, nil, err
	}
	// moby/ipvs logs through logrus (a modprobe it tries itself, for
	// one); the agent reports IPVS problems through its own errors.
	logrus.SetOutput(io.Discard)
	ipvs, err := dataplane.NewKernelIPVS()
	if err != nil {
		_ = rs.Shutdown()
		return nil, nil, err
	}
	return &director.Dataplane{RS: rs, IPVS: ipvs, ARP: dataplane.RawARP{}}, ipvs.Close, nil
}

// shutdownTimeout bounds a graceful stop. Past it the agent logs every
// goroutine's stack — so the step that hung can be found — and exits, as
// systemd would kill it after TimeoutStopSec anyway.
const shutdownTimeout = 15 * time.Second

func shutdownWatchdog(stopped <-chan struct{}, stderr io.Writer, logger *slog.Logger) {
	select {
	case <-stopped:
	case <-time.After(shutdownTimeout):
		logger.Error("graceful stop did not finish; exiting anyway (goroutine stacks follow)", "timeout", shutdownTimeout)
		_ = pprof.Lookup("goroutine").WriteTo(stderr, 1)
		os.Exit(1)
	}
}

// drainDelay is how long a stopping node keeps answering on its lo VIP
// after saying it drains (the DC stops sending it new connections, and
// those in flight finish) and again after leaving gossip (the DC removes
// it from the IPVS table before it stops accepting direct-routed packets).
const drainDelay = 300 * time.Millisecond

// joinAtStart retries the --join addresses until one answers or the agent
// stops, like Consul's retry_join.
func joinAtStart(ctx context.Context, node *cluster.Node, addrs []string, logger *slog.Logger) {
	_ = retry.Do(ctx, retry.Policy{Interval: 2 * time.Second, PerAttempt: 10 * time.Second}, func(jctx context.Context, attempt int) error {
		_, err := node.Join(jctx, addrs)
		if err != nil && ctx.Err() == nil {
			logger.Warn("join at start failed, retrying", "attempt", attempt, "err", err)
		}
		return err
	})
}

// lookupUser is the credential the programs of one kind (what: "exec
// health checks") run with: the named user and its primary group. An
// agent that is not root cannot switch users; they run as itself.
func lookupUser(name, what string, logger *slog.Logger) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s has uid %q", name, u.Uid)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user %s has gid %q", name, u.Gid)
	}
	switch {
	case os.Geteuid() != 0:
		if uint64(os.Geteuid()) != uid {
			logger.Warn("not running as root: "+what+" run as the agent's own user", "user", name)
		}
		return nil, nil
	case uid == 0:
		logger.Warn(what+" run as root: a program can do anything on the DC", "user", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// loadAgentTLS loads the node's TLS material from dir, refusing a
// directory that holds the CA's private key (whoever reads it mints
// certificates the cluster accepts), and warns of a certificate or CA that
// expires soon.
func loadAgentTLS(dir, name string, logger *slog.Logger) (*tls.Config, error) {
	if _, err := os.Lstat(filepath.Join(dir, "ca-key.pem")); err == nil {
		return nil, fmt.Errorf("--tls-dir %s holds ca-key.pem, the cluster CA's private key: whoever can read it on this node mints certificates the cluster accepts. Keep it on the machine where certificates are issued, and give the node a directory of its own (raftlb tls cert --out DIR)", dir)
	}
	conf, err := cluster.LoadTLS(dir, name)
	if err != nil {
		return nil, err
	}
	if w := cluster.CertWarning(conf, time.Now()); w != "" {
		logger.Warn("certificates expire soon", "warning", w)
	}
	return conf, nil
}

// reloadOnHUP reloads the gossip keys and the TLS material on SIGHUP
// (systemctl reload raftlb) without a restart. What fails to load is
// logged and the material in use is kept.
func reloadOnHUP(ctx context.Context, hup <-chan os.Signal, node *cluster.Node, f *agentFlags, logger *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		}
		if f.insecure {
			logger.Warn("SIGHUP: nothing to reload without gossip encryption and TLS (--insecure)")
			continue
		}
		logger.Info("SIGHUP: reloading the gossip keys and the TLS certificate")
		if keys, err := cluster.LoadKeyRing(f.keyFile); err != nil {
			logger.Error("reload: keeping the gossip keys in use", "err", err)
		} else if err := node.ReloadGossipKeys(keys); err != nil {
			logger.Error("reload: keeping the gossip keys in use", "err", err)
		}
		if conf, err := loadAgentTLS(f.tlsDir, f.name, logger); err != nil {
			logger.Error("reload: keeping the TLS certificate in use", "err", err)
		} else if err := node.ReloadTLS(conf); err != nil {
			logger.Error("reload: keeping the TLS certificate in use", "err", err)
		}
	}
}

// insecureAllowed permits --insecure only where nobody else can reach the
// agent: on a loopback bind address, or inside the network namespace the
// operator names (netnsDir/NAME, as ip netns keeps them, must be this
// process's).
func insecureAllowed(bind netip.Addr, netns, netnsDir string) error {
	if bind.IsLoopback() || bind.IsUnspecified() {
		return nil // an unspecified bind is refused by the cluster's own check
	}
	if netns == "" {
		return fmt.Errorf("--bind %s is not loopback: without encryption and TLS anyone who reaches it can apply, remove voters and inject Raft RPCs; use a loopback address, or run in a network namespace and name it with --insecure-netns", bind)
	}
	if strings.ContainsAny(netns, "/\x00") || netns == "." || netns == ".." {
		return fmt.Errorf("--insecure-netns %q: a namespace name, as ip netns list shows", netns)
	}
	ours, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("reading this process's network namespace: %w", err)
	}
	named, err := os.Stat(filepath.Join(netnsDir, netns))
	if err != nil {
		return fmt.Errorf("network namespace %q: %w", netns, err)
	}
	if !os.SameFile(ours, named) {
		return fmt.Errorf("the agent does not run in network namespace %q (start it with ip netns exec %s)", netns, netns)
	}
	return nil
}
