package director

import (
	"maps"
	"net/netip"
	"reflect"

	"github.com/raftlb/raftlb/fsm"
)

// stateKey is what of the replicated state a DC's term acts on: the spec
// (by its version), the node registry, maintenance, and who holds each
// VIP. The term's own records (its claims and releases in its term, the
// fence history it writes, the device checks) are left out, so a commit
// of its own does not wake it to reconcile again. A fencing's success does
// wake it: it marks the fenced node's VIPs released.
type stateKey struct {
	specVersion uint64
	nodes       map[string]fsm.Node
	standby     map[string]bool
	disabled    []fsm.ServerRef
	holders     map[netip.Addr]fsm.Holder
}

// keyOf is state's stateKey for the term n of node me.
func keyOf(state fsm.State, me string, n uint64) stateKey {
	holders := maps.Clone(state.Holders)
	maps.DeleteFunc(holders, func(_ netip.Addr, h fsm.Holder) bool { return h.Node == me && h.Term == n })
	return stateKey{specVersion: state.Spec.Version, nodes: state.Nodes, standby: state.Standby, disabled: state.Disabled, holders: holders}
}

// wakes reports whether the replicated state changed in a way the term
// acts on since it last looked, and remembers what it saw.
func (t *term) wakes() bool {
	k := keyOf(t.d.c.FSM().State(), t.d.c.Name(), t.n)
	if reflect.DeepEqual(k, t.seen) {
		return false
	}
	t.seen = k
	return true
}
