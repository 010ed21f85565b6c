package main

// The data plane the director drives: the kernel's, the recording fakes,
// or none; and the hardware watchdog a DC's term arms.

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/director"
	"github.com/raftlb/raftlb/realserver"
	"github.com/raftlb/raftlb/watchdog"
)

// startDataplane opens the data plane --dataplane asks for: the kernel's
// (IPVS, addresses, ARP), the recording fakes (the whole director runs,
// nothing reaches the kernel: for tests of real agent processes), or none
// (nil). The real-server side starts at once: a restarted agent takes any
// VIP it left on the interface back to lo before anything else.
func startDataplane(f *agentFlags, logger *slog.Logger) (*director.Dataplane, func(), error) {
	switch f.dataplane {
	case "none":
		return nil, func() {}, nil
	case "fake":
		iface := f.iface
		if iface == "" {
			iface = "eth0"
		}
		var answers dataplane.VIPLease
		if f.arpLease > 0 {
			answers = dataplane.NewFakeLease(nil)
		}
		dp := &director.Dataplane{
			RS: realserver.New(realserver.NewFake(iface), realserver.Config{Interface: iface, StateFile: filepath.Join(f.dataDir, "vips.json"), Lease: f.vipLease,
				Answers: answers, AnswerLease: f.arpLease, ConnSync: f.ipvsSync, Logger: logger}),
			IPVS: dataplane.NewFakeIPVS(),
			ARP:  &dataplane.FakeARP{},
		}
		if f.ipvsSync {
			id, err := f.syncID()
			if err != nil {
				return nil, nil, err
			}
			dp.Sync = &director.ConnSync{Kernel: &dataplane.FakeSync{}, Interface: iface, ID: id}
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
	// What the kernel answers for a VIP is gated by a lease in nftables
	// (dataplane/lease.go); the connection closes after the real-server
	// side's Shutdown, which removes the table.
	var answers dataplane.VIPLease
	closeAnswers := func() {}
	if f.arpLease > 0 {
		l, err := dataplane.NewNFTLease(dataplane.NFTLeaseConfig{})
		if err != nil {
			return nil, nil, fmt.Errorf("--arp-lease needs nftables (the nf_tables module with its arp and ip6 families): %w; --arp-lease 0 runs without it, on the VIP lease alone", err)
		}
		answers, closeAnswers = l, func() { _ = l.Close() }
	}
	rs := realserver.New(realserver.Netlink{}, realserver.Config{Interface: f.iface, StateFile: filepath.Join(f.dataDir, "vips.json"), Lease: f.vipLease,
		Answers: answers, AnswerLease: f.arpLease, ConnSync: f.ipvsSync, Logger: logger})
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		closeAnswers()
		return nil, nil, fmt.Errorf("create data dir: %w", err)
	}
	if err := rs.Start(); err != nil {
		closeAnswers()
		return nil, nil, err
	}
	// moby/ipvs logs through logrus (a modprobe it tries itself, for
	// one); the agent reports IPVS problems through its own errors.
	logrus.SetOutput(io.Discard)
	ipvs, err := dataplane.NewKernelIPVS()
	if err != nil {
		_ = rs.Shutdown()
		closeAnswers()
		return nil, nil, err
	}
	dp := &director.Dataplane{RS: rs, IPVS: ipvs, ARP: dataplane.RawARP{}}
	stopSync := func() {}
	if f.ipvsSync {
		k, err := dataplane.NewKernelSync()
		if err == nil {
			if dp.Sync, err = f.connSync(k); err != nil {
				k.Close()
			}
		}
		if err != nil {
			_ = rs.Shutdown()
			ipvs.Close()
			closeAnswers()
			return nil, nil, err
		}
		// After the real-server side's Shutdown (the VIPs are off lo): the
		// node keeps its backup until then, so no copied entry makes it
		// balance while it still serves the VIP.
		stopSync = func() {
			if _, err := dataplane.SetSyncRole(k, dataplane.SyncDaemon{}); err != nil {
				logger.Error("stopping the IPVS sync daemon", "err", err)
			}
			k.Close()
		}
	}
	return dp, func() { stopSync(); ipvs.Close(); closeAnswers() }, nil
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
