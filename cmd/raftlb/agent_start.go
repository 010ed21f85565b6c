package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/api"
	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fencing"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/retry"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
	"github.com/raftlb/raftlb/webui"
)

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
	a, err := startAgent(f, logger)
	if err != nil {
		return err
	}
	err = a.wait()
	return errors.Join(err, a.stop(stderr))
}

// agent is a started agent: what ends its run, and the closers that stop
// it.
type agent struct {
	logger   *slog.Logger
	closers  closers
	ctx      context.Context // ends on SIGINT or SIGTERM
	left     chan struct{}   // closed once this node has left the cluster
	serveErr chan error      // the admin API's failure
	sd       notifier
}

// stopTimeout bounds what a stop waits for requests in flight (the admin
// API's, the web page's).
const stopTimeout = 10 * time.Second

// startAgent starts the agent, pushing a closer for each thing it starts.
// A start that fails runs the closers pushed so far, in reverse, and
// returns its error.
//
// Start order: the real-server side first (a restarted agent takes any VIP
// it left on the interface back to lo before anything else), then
// replicated state, cluster node, event notifiers, director, admin API,
// joins. The shutdown order is the closers' in reverse, arranged so a
// graceful stop of the DC fails no client request:
//  1. "admin API", then "web": stop taking admin requests;
//  2. "DC duties": hand DC duties to another voter: it claims the VIP and
//     sends gratuitous ARP while this node still answers;
//  3. "director": stop the director: it gives the VIPs back to lo and
//     removes its IPVS services; then "notifiers" and "DC watch", which
//     outlive it so a graceful stop's events go out too;
//  4. "drain": tell the DC this agent is stopping, so it sends this node
//     no new connections (weight 0) while the ones in flight here finish;
//     removing a real server outright makes the DC's kernel reset a
//     handshake in flight to it;
//  5. "leave gossip", so the DC drops this node from its table at once,
//     and give it a moment to do so;
//  6. "real-server side": take the VIPs off lo and restore the sysctls;
//  7. "agent context", then "Raft and gossip": stop what reads the node,
//     then Raft and gossip;
//
// and last what the start began with: the IPVS handle, the SIGHUP handler.
func startAgent(f *agentFlags, logger *slog.Logger) (_ *agent, err error) {
	a := &agent{
		logger: logger, closers: closers{logger: logger}, sd: notifier{logger: logger},
		left: make(chan struct{}), serveErr: make(chan error, 1),
	}
	defer func() {
		if err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
		defer cancel()
		if cerr := a.closers.close(ctx); cerr != nil {
			logger.Error("cleaning up after the failed start", "err", cerr)
		}
	}()
	// SIGHUP (systemctl reload) is caught from the start: its default
	// would end the agent. It is acted on once the node runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	a.closers.push("SIGHUP handler", func(context.Context) error { signal.Stop(hup); return nil })
	cfg, err := newAgentConfig(f, logger)
	if err != nil {
		return nil, err
	}

	dp, closeIPVS, err := startDataplane(f, logger)
	if err != nil {
		return nil, err
	}
	// The VIPs come off lo once: on a stop after the node has left gossip
	// ("real-server side", below); should the start fail before the node
	// runs, here.
	releaseVIPs := func() error { return nil }
	if dp != nil {
		releaseVIPs = sync.OnceValue(dp.RS.Shutdown)
		a.closers.push("IPVS handle", func(context.Context) error { closeIPVS(); return nil })
		a.closers.push("real-server side, if the node never ran", func(context.Context) error { return releaseVIPs() })
	}
	state := fsm.NewWith(fsm.Options{Logger: logger.With("component", "fsm")})
	node, err := cluster.Start(cfg.cluster, state)
	if err != nil {
		return nil, err
	}
	a.closers.push("Raft and gossip", func(context.Context) error { return node.Shutdown() })
	// What runs on the agent's context reads the node: it ends first.
	ctx, stopCtx := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	a.ctx = ctx
	a.closers.push("agent context", func(context.Context) error { stopCtx(); return nil })
	go reloadOnHUP(ctx, hup, node, f, logger)
	// Leaving needs the node running; the VIPs stay on lo until the DC has
	// dropped this node (drainDelay after each step).
	if dp != nil {
		a.closers.push("real-server side", func(context.Context) error {
			err := releaseVIPs()
			logger.Info("stopping: VIPs removed, sysctls restored")
			return err
		})
	}
	a.closers.push("leave gossip", func(context.Context) error {
		logger.Info("stopping: leaving gossip")
		node.LeaveGossip()
		if dp != nil {
			time.Sleep(drainDelay)
		}
		return nil
	})
	a.closers.push("drain", func(context.Context) error {
		logger.Info("stopping: director stopped; draining: no new connections to this node")
		node.Drain()
		if dp != nil {
			time.Sleep(drainDelay)
		}
		return nil
	})

	bus := events.NewBus(f.name, events.DefaultKeep)
	// The registry's sources are read at scrape time; the director is
	// made below and reports to m.
	var dir *director.Director
	reg, m, err := newRegistry(metricSources(node, func() *director.Director { return dir }, dp))
	if err != nil {
		return nil, err
	}
	// What the last run may have left running is stopped before this
	// node reports that it let go (resources.json).
	resGroup, err := resources.NewGroup(resources.NewRunner(resources.Config{Logger: logger, Node: f.name, OCFRoot: f.ocfRoot, HookDirs: f.hookDirs}),
		resources.GroupConfig{Logger: logger, StateFile: filepath.Join(f.dataDir, "resources.json")})
	if err != nil {
		return nil, fmt.Errorf("%w (make sure none of its resources runs on this node, then remove the file)", err)
	}
	// Off the DC's critical path: each subscriber has its own queue. The
	// notifiers start before the director and stop after it, so a graceful
	// stop's events go out too.
	go events.WatchQuorum(ctx, bus, time.Second, func() bool { return node.View().Quorum })
	stopDCWatch := node.ObserveDC(events.NewDCWatch(bus).Saw)
	a.closers.push("DC watch", func(context.Context) error { stopDCWatch(); return nil })
	startNotifiers(f, bus, &a.closers, logger)

	// The director runs on every node: with a data plane it holds the VIPs
	// and the IPVS table while DC; without one it still runs the DC's
	// membership duties.
	dir = director.New(node, dp, director.Config{
		GARPCount: f.garpCount, GARPRefresh: f.garpRefresh, Lease: f.lease(), Events: bus, Metrics: m,
		Exec:   health.NewExec(f.execDirs, cfg.execUser, f.execMaxProcs),
		Fencer: fencing.NewRunner(fencing.Config{Logger: logger, Dirs: f.fenceAgentDirs, SecretDirs: f.fenceSecretDirs, User: cfg.fenceUser}), Watchdog: openWatchdog(f), Logger: logger,
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
	a.closers.push("director", func(context.Context) error { stopDirector(); <-dirDone; return nil })
	// The hand-over comes before the director stops: this node keeps the
	// VIPs until the successor claims them.
	a.closers.push("DC duties", func(context.Context) error { node.HandOver(); return nil })

	// The web page starts before the admin API so that a stop ends admin
	// requests first; a web page that cannot listen is logged, not fatal.
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
		if web, werr := startWeb(f.httpAddr, tlsConf, mux, logger); werr != nil {
			logger.Error("not serving --http", "err", werr)
		} else {
			a.closers.push("web", func(ctx context.Context) error { web.shutdown(ctx); return nil })
		}
	}
	ln, err := api.Listen(cfg.api)
	if err != nil {
		return nil, err
	}
	var leftOnce sync.Once
	srv := api.NewServer(agentAPI{Node: node, view: view}, func() { leftOnce.Do(func() { close(a.left) }) }, logger)
	if dp != nil {
		srv.SetDataplane(dir)
	}
	srv.SetFencing(dir)
	srv.SetEvents(bus)
	go func() { a.serveErr <- srv.Serve(ln) }()
	a.closers.push("admin API", func(ctx context.Context) error {
		_ = srv.Shutdown(ctx)
		if cfg.api.Unix != "" {
			_ = os.Remove(cfg.api.Unix)
		}
		return nil
	})
	logger.Info("admin API listening", "api", cfg.api.String())
	go a.sd.run(ctx, dir.StartedUp(), node.View, dir.Beat)
	go countEvents(ctx, bus, m)
	if len(f.join) > 0 {
		go joinAtStart(ctx, node, f.join, logger)
	}
	return a, nil
}

// startNotifiers starts the --notify programs and the mail alerts on the
// bus and pushes their closer: a stop waits for the events queued.
func startNotifiers(f *agentFlags, bus *events.Bus, c *closers, logger *slog.Logger) {
	ctx, stop := context.WithCancel(context.Background())
	var notifiers sync.WaitGroup
	for _, argv := range f.notify {
		notifiers.Go(func() {
			events.RunScript(ctx, bus, events.Script{Argv: argv, Timeout: f.notifyTimeout, Queue: f.notifyQueue}, logger)
		})
	}
	if f.smtpRelay != "" {
		notifiers.Go(func() { events.RunMail(ctx, bus, f.mail(), logger) })
	}
	c.push("notifiers", func(context.Context) error { stop(); notifiers.Wait(); return nil })
}

// wait blocks until the agent is told to stop (a signal, or leaving the
// cluster) or its admin API fails, and returns that failure.
func (a *agent) wait() error {
	select {
	case <-a.ctx.Done():
		a.logger.Info("signal received, stopping")
	case <-a.left:
		a.logger.Info("left the cluster, stopping")
	case err := <-a.serveErr:
		a.logger.Error("admin API failed", "err", err)
		return err
	}
	return nil
}

// stop runs the closers (the shutdown order is startAgent's), bounded by
// shutdownTimeout.
func (a *agent) stop(stderr io.Writer) error {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	stopped := make(chan struct{})
	defer close(stopped)
	go shutdownWatchdog(stopped, stderr, a.logger)
	a.sd.send("STOPPING=1\nSTATUS=stopping: handing DC duties over")
	err := a.closers.close(ctx)
	a.logger.Info("stopped")
	return err
}

// agentAPI is what the admin API serves: the cluster node's operations and
// the status view.
type agentAPI struct {
	*cluster.Node
	view *status.Source
}

func (a agentAPI) Status() status.Status { return a.view.Status() }

func (a agentAPI) Spec() spec.Spec { return a.Node.FSM().Spec() }

func (a agentAPI) State() fsm.State { return a.Node.FSM().State() }

func (a agentAPI) WaitForSpec(ctx context.Context, v uint64) error {
	return a.Node.FSM().WaitForSpec(ctx, v)
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
