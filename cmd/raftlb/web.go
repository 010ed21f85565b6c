package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/metrics"
	"github.com/raftlb/raftlb/resources"
)

// checkHTTPAddr checks --http: IP:PORT, loopback unless the operator asks
// for mutual TLS with the cluster CA (--http-mtls) or says it may be
// public (--http-public): the page and the metrics show the cluster's
// layout to whoever reaches them.
func checkHTTPAddr(addr string, mtls, public, insecure bool) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("--http %q: want IP:PORT", addr)
	}
	switch {
	case mtls && insecure:
		return errors.New("--http-mtls needs the cluster's TLS material: not with --insecure")
	case mtls && public:
		return errors.New("--http-mtls and --http-public: choose one")
	case ap.Addr().IsLoopback() || mtls || public:
		return nil
	}
	return fmt.Errorf("--http %s is not loopback: the status page and the metrics show the cluster's layout; require the cluster CA's client certificates with --http-mtls, or say it may be public with --http-public", addr)
}

// webServer serves /metrics (and the status page) on --http.
type webServer struct {
	srv *http.Server
	ln  net.Listener
}

// newRegistry is the agent's registry: its own metrics and the Go
// runtime's and process's (CPU, memory, file descriptors).
func newRegistry(src metrics.Sources) (*prometheus.Registry, *metrics.Metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, nil, err
	}
	m, err := metrics.New(reg, src)
	if err != nil {
		return nil, nil, err
	}
	return reg, m, nil
}

// countEvents feeds the events counter from the bus until ctx ends.
func countEvents(ctx context.Context, bus *events.Bus, m *metrics.Metrics) {
	sub, _ := bus.Subscribe(256)
	defer sub.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-sub.C():
			m.Event(e)
		}
	}
}

func startWeb(addr string, tlsConf *tls.Config, handler http.Handler, logger *slog.Logger) (*webServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--http %s: %w", addr, err)
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	w := &webServer{ln: ln, srv: &http.Server{Handler: handler, ReadHeaderTimeout: 5 * time.Second}}
	go func() {
		if err := w.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("the HTTP listener failed", "http", addr, "err", err)
		}
	}()
	logger.Info("HTTP listening: /metrics and the status page", "http", addr, "mutual_tls", tlsConf != nil)
	return w, nil
}

func (w *webServer) shutdown(ctx context.Context) {
	if w != nil {
		_ = w.srv.Shutdown(ctx)
	}
}

// metricSources are the agent's state as the collector reads it.
func metricSources(node *cluster.Node, dirOf func() *director.Director, dp *director.Dataplane) metrics.Sources {
	src := metrics.Sources{
		View: node.View, Spec: node.FSM().Spec, Expires: node.CertExpiry,
		Health:    func() map[health.Key]health.State { return dirOf().Health() },
		Writes:    func() uint64 { return dirOf().Writes() },
		GARPs:     func() uint64 { return dirOf().GARPs() },
		Resources: func() []resources.Status { return dirOf().Resources() },
	}
	if dp != nil {
		src.VIPs = func() []metrics.VIP {
			var out []metrics.VIP
			for _, v := range node.FSM().Spec().VIPs {
				iface, onIface, _ := dp.RS.Where(v.Address)
				out = append(out, metrics.VIP{Address: v.Address, Interface: iface, OnIface: onIface})
			}
			return out
		}
		src.IPVS = dp.IPVS.Services
	}
	return src
}

func metricsHandler(reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn), Timeout: 10 * time.Second})
}
