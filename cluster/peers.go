package cluster

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// The peers file: the gossip addresses of the other members, so a
// restarted agent finds its cluster again without a new join.

func (n *Node) peersFile() string { return filepath.Join(n.cfg.DataDir, "peers.json") }

// savePeers remembers the gossip addresses of the other live members so a
// restarted agent finds its cluster again without a new join.
func (n *Node) savePeers() {
	var peers []string
	for _, m := range n.members() {
		if m.Name != n.cfg.Name && m.Gossip.IsValid() {
			peers = append(peers, m.Gossip.String())
		}
	}
	if len(peers) == 0 {
		return
	}
	sort.Strings(peers)
	if slices.Equal(peers, n.loadPeers()) {
		return
	}
	b, _ := json.Marshal(peers)
	tmp := n.peersFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		n.logger.Warn("could not save peers", "err", err)
		return
	}
	if err := os.Rename(tmp, n.peersFile()); err != nil {
		n.logger.Warn("could not save peers", "err", err)
	}
}

func (n *Node) loadPeers() []string {
	b, err := os.ReadFile(n.peersFile())
	if err != nil {
		return nil
	}
	peers, err := parsePeers(b)
	if err != nil {
		n.logger.Warn("ignoring unreadable peers file", "file", n.peersFile(), "err", err)
		return nil
	}
	return peers
}

// parsePeers reads the peers file: a JSON list of HOST:PORT gossip
// addresses.
func parsePeers(b []byte) ([]string, error) {
	var peers []string
	if err := json.Unmarshal(b, &peers); err != nil {
		return nil, err
	}
	for _, p := range peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return nil, fmt.Errorf("peer %q: %w", p, err)
		}
	}
	return peers, nil
}
