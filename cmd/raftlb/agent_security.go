package main

// The agent's credentials and trust boundaries: its TLS material (loaded
// at start, reloaded on SIGHUP), the users the programs it runs switch
// to, and where --insecure is allowed.

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/cluster"
)

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
