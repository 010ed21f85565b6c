package fsm

import (
	"fmt"
	"strings"
)

// Rolling upgrades. Every node applies every entry, so an entry a node's
// release cannot read stops that node (Apply panics rather than diverge).
// The schema version says what a release reads: each release that adds a
// command or a field whose meaning older nodes would miss bumps Schema and
// teaches Command.Schema which entries need it. Nodes advertise the schema
// they read (gossip, and the registry keeps what each node last said); the
// DC commits an entry only when every node reads its schema, and admits no
// node that reads less than the log already uses (State.Schema). An entry
// older nodes may skip (IgnoreUnknownType) is committed anyway: they skip
// it, log it and count it.
//
//	1  the spec (VIPs, services, health checks, policy), the node
//	   registry, the VIPs' holders
//	2  fencing: the spec's fence devices and levels, the fencing records
//	   and device checks; witness nodes (Node.Witness)
//	3  maintenance: nodes in standby, disabled real servers; the spec's
//	   preferred DC
//	4  revoked certificates (a removal that revokes)
const Schema = 5

// schemaName names what a schema version added, for the operator.
func schemaName(v int) string {
	switch v {
	case 1:
		return "the first schema"
	case 2:
		return "fencing and witness nodes"
	case 3:
		return "standby, disabled real servers, a preferred DC"
	case 4:
		return "revoked certificates"
	case 5:
		return "resources that move with the DC"
	}
	return "unknown"
}

// Schema is the lowest schema version that reads c.
func (c Command) Schema() int {
	switch c.Type {
	case CmdSetSpec:
		if len(c.SetSpec.Spec.Resources) > 0 {
			return 5
		}
		if c.SetSpec.Spec.Policy.PreferredDC != "" {
			return 3
		}
		if f := c.SetSpec.Spec.Fencing; len(f.Devices) > 0 || len(f.Levels) > 0 {
			return 2
		}
	case CmdRegisterNode:
		if c.Node.Witness {
			return 2
		}
	case CmdFenceStart, CmdFenceDone, CmdFenceConfirm, CmdDeviceCheck:
		return 2
	case CmdNodeStandby, CmdServerDisable:
		return 3
	case CmdDeregisterNode:
		if c.Deregister.Revoke != nil {
			return 4
		}
	}
	return 1
}

// NodeSchema is the schema a node advertised, 1 for one that said nothing
// (a release before schemas were advertised).
func NodeSchema(advertised int) int {
	return max(advertised, 1)
}

// SchemaError refuses an entry that some nodes cannot read.
type SchemaError struct {
	Need  int      // the entry's schema
	Nodes []string // the nodes that read less, sorted
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("this change needs schema %d (%s), which %s cannot read: upgrade raftlb there first, or remove %s",
		e.Need, schemaName(e.Need), strings.Join(e.Nodes, ", "), them(len(e.Nodes)))
}

func them(n int) string {
	if n == 1 {
		return "it"
	}
	return "them"
}
