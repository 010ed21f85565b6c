package fsm

import (
	"net/netip"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// State is everything the cluster replicates. It is only ever changed by
// applying a committed command; readers get deep copies.
type State struct {
	// Spec is the operator's desired configuration, replaced as a whole by
	// each successful apply.
	Spec spec.Spec `json:"spec"`
	// Nodes is the node registry, keyed by node name. The DC registers a node
	// when it joins the Raft configuration and deregisters it when it leaves.
	Nodes map[string]Node `json:"nodes"`
	// Holders records, per VIP, which DC claimed it and whether it let go.
	Holders map[netip.Addr]Holder `json:"holders,omitempty"`
	// FenceHistory is the last MaxFenceHistory fencings, oldest first.
	FenceHistory []FenceEvent `json:"fence_history,omitempty"`
	// DeviceChecks is each fence device's last check result that changed.
	DeviceChecks map[string]DeviceCheck `json:"device_checks,omitempty"`
	// Schema is the highest schema version an applied entry needed: a
	// node that reads less cannot replay this log.
	Schema int `json:"schema,omitempty"`
	// Standby is the nodes in standby; Disabled the disabled real servers
	// (fsm/maintenance.go).
	Standby  map[string]bool `json:"standby,omitempty"`
	Disabled []ServerRef     `json:"disabled,omitempty"`
	// Revoked is the removed nodes' certificates, by node name
	// (fsm/revoke.go): every connection is checked against it.
	Revoked []Revocation `json:"revoked,omitempty"`
}

// isNode reports whether name is in the node registry.
func (st State) isNode(name string) bool {
	_, ok := st.Nodes[name]
	return ok
}

// Node is a registry entry for one cluster member.
type Node struct {
	Name       string         `json:"name"`
	Address    netip.Addr     `json:"address"`     // --bind: the real-server address
	RaftAddr   netip.AddrPort `json:"raft_addr"`   // Raft transport (mutual TLS)
	GossipAddr netip.AddrPort `json:"gossip_addr"` // memberlist
	// Witness: a voter that never directs and is no real server.
	Witness bool `json:"witness,omitempty"`
	// Schema is the schema version the node advertised (see Schema).
	Schema   int       `json:"schema,omitempty"`
	JoinedAt time.Time `json:"joined_at"` // set by the proposer, never by Apply
}
