package fsm

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/raftlb/raftlb/spec"
)

func TestValidateNode(t *testing.T) {
	good := testNode("m30", "10.0.0.30")
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(%+v): %v", good, err)
	}
	tests := []struct {
		name   string
		mutate func(*Node)
		path   string
	}{
		{"no name", func(n *Node) { n.Name = "" }, "node.name"},
		{"name with newline", func(n *Node) { n.Name = "m30\n" }, "node.name"},
		{"no address", func(n *Node) { n.Address = netip.Addr{} }, "node.address"},
		{"multicast address", func(n *Node) { n.Address = netip.MustParseAddr("ff02::1") }, "node.address"},
		{"no raft address", func(n *Node) { n.RaftAddr = netip.AddrPort{} }, "node.raft_addr"},
		{"raft port 0", func(n *Node) { n.RaftAddr = netip.AddrPortFrom(n.Address, 0) }, "node.raft_addr"},
		{"gossip unspecified", func(n *Node) { n.GossipAddr = netip.MustParseAddrPort("0.0.0.0:7946") }, "node.gossip_addr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := testNode("m30", "10.0.0.30")
			tt.mutate(&n)
			err := n.Validate()
			var ve *spec.ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 || ve.Problems[0].Path != tt.path {
				t.Errorf("Validate = %v, want one problem at %s", err, tt.path)
			}
		})
	}
}
