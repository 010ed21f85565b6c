package cluster

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/raftlb/raftlb/internal/retry"
)

// Joining a cluster: gossip first, then proof that Raft's mutual TLS works
// with a peer; a restarted node rejoins the peers it remembers
// (peers.go) in the background.

const (
	// joinRetry is the pause between two gossip joins of one Join.
	joinRetry = 300 * time.Millisecond
	// rejoinRetry and rejoinAttempt pace a restarted node's rejoin of the
	// peers it remembers, in the background.
	rejoinRetry   = 2 * time.Second
	rejoinAttempt = 5 * time.Second
)

// Join asks gossip to join the nodes at addrs (host:gossip-port), retrying
// until ctx expires. Joining a cluster this node already belongs to is a
// no-op. After gossip, it proves that Raft's mutual TLS works with a peer,
// so a wrong certificate is reported here rather than discovered later.
func (n *Node) Join(ctx context.Context, addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, errors.New("join: no addresses given")
	}
	var joined int
	var partial error
	err := retry.Do(ctx, retry.Policy{Interval: joinRetry}, func(context.Context, int) error {
		var err error
		if joined, err = n.ml.Join(addrs); joined > 0 {
			partial = err
			return nil
		}
		if keyMismatch(err) {
			// Retrying cannot help: the peers use another key.
			return retry.Stop(fmt.Errorf("join %v: %w (every node needs the same --key-file): %w", addrs, ErrGossipKey, err))
		}
		return err
	})
	if errors.Is(err, ErrGossipKey) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("join %v: %w (check the address, that the gossip port is reachable and that every node uses the same gossip key)", addrs, err)
	}
	if partial != nil {
		n.logger.Warn("join reached only some nodes", "joined", joined, "err", partial)
	}
	n.logger.Info("joined gossip", "contacted", joined)
	if err := n.checkPeerTLS(ctx); err != nil {
		return joined, err
	}
	n.savePeers()
	return joined, nil
}

// keyMismatch recognises memberlist's errors for a gossip key that does
// not match, or encryption on one side only. memberlist has no typed
// errors for them, so its words (v0.5.4, security.go and net.go) are
// compared, without regard to case: they have changed case between
// releases, and an exact match once silently stopped working.
func keyMismatch(err error) bool {
	if err == nil {
		return false
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{
		"no installed keys could decrypt",
		"encryption is configured but remote state is not encrypted",
		"remote state is encrypted and encryption is not configured",
	} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// checkPeerTLS pings one peer over the Raft port. Success means both
// certificates chain to the same CA.
func (n *Node) checkPeerTLS(ctx context.Context) error {
	var lastErr error
	for _, m := range n.members() {
		if m.Name == n.cfg.Name || m.MetaErr != nil || m.State != memberlist.StateAlive {
			continue
		}
		if _, err := n.Ping(ctx, m.Name, m.RaftAddr); err != nil {
			hint := ""
			if !errors.Is(err, ErrRefused) { // the peer's check, not the CA, said no
				hint = " (are this node's certificate and the peer's issued by the same cluster CA?)"
			}
			lastErr = fmt.Errorf("joined gossip, but Raft over mutual TLS to %s (%s) failed: %w%s", m.Name, m.RaftAddr, err, hint)
			continue
		}
		return nil
	}
	return lastErr
}

// rejoin re-joins the peers remembered from the last run, in the
// background, until one answers.
func (n *Node) rejoin(ctx context.Context, peers []string) {
	_ = retry.Do(ctx, retry.Policy{Interval: rejoinRetry, PerAttempt: rejoinAttempt}, func(actx context.Context, attempt int) error {
		_, err := n.Join(actx, peers)
		if err != nil {
			n.logger.Debug("rejoin failed, retrying", "attempt", attempt, "err", err)
		}
		return err
	})
}
