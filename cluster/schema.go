package cluster

import (
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"

	"github.com/raftlb/raftlb/fsm"
)

// Rolling upgrades (fsm/schema.go): the DC commits an entry only when every
// node reads its schema, and admits to Raft no node that reads less than
// the log uses.

// nodeSchemas is the schema each member reads (in the Raft configuration
// or the registry): what it advertises in gossip while alive, else what
// the registry recorded when it last registered. A member that is down
// still counts: it replays the log when it comes back. A node that is
// only in gossip does not: it is not admitted unless it reads the log.
func (n *Node) nodeSchemas() map[string]int {
	out := map[string]int{}
	for name, node := range n.fsm.State().Nodes {
		out[name] = fsm.NodeSchema(node.Schema)
	}
	servers := n.configuredServers()
	for _, m := range n.members() {
		_, registered := out[m.Name]
		_, configured := servers[m.Name]
		if (registered || configured) && m.MetaErr == nil && m.State == memberlist.StateAlive && !n.gossip.hasLeft(m.Name) {
			out[m.Name] = fsm.NodeSchema(m.Meta.Schema)
		}
	}
	return out
}

// checkSchema refuses cmd when some node cannot read it. An entry older
// nodes may skip passes: they skip it, log it and count it.
func (n *Node) checkSchema(cmd []byte) error { return n.checkSchemaExcept(cmd, "") }

// checkSchemaExcept is checkSchema leaving out the node being removed by
// cmd: it will not read the log again.
func (n *Node) checkSchemaExcept(cmd []byte, except string) error {
	c, err := fsm.DecodeCommand(cmd)
	if err != nil {
		return fmt.Errorf("check the entry's schema: %w", err)
	}
	need := c.Schema()
	if c.IgnoreUnknown || need <= 1 {
		return nil
	}
	var older []string
	for name, v := range n.nodeSchemas() {
		if v < need && name != except {
			older = append(older, name)
		}
	}
	if len(older) == 0 {
		return nil
	}
	slices.Sort(older)
	return &fsm.SchemaError{Need: need, Nodes: older}
}

// admissible says why a live node that is not in Raft yet must stay out,
// or "" when it may join: it must read everything the log uses, and the
// others must read its registration.
func (n *Node) admissible(m member, state fsm.State) string {
	v := fsm.NodeSchema(m.Meta.Schema)
	if v < state.Schema {
		return fmt.Sprintf("it reads schema %d and the log uses schema %d: upgrade raftlb on it", v, state.Schema)
	}
	reg, err := fsm.EncodeCommand(fsm.CmdRegisterNode, registration(m, state))
	if err != nil {
		return err.Error()
	}
	if err := n.checkSchema(reg); err != nil {
		return err.Error()
	}
	return ""
}
