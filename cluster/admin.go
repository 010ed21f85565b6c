package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// What an operator does to the cluster from any node (the admin API):
// remove a node that is gone for good, move the DC on purpose. Both are
// carried out by the DC; a node that is not DC forwards them.

const (
	opRemoveNode = "remove-node"
	opMoveDC     = "move-dc"
	opStandby    = "standby"
	opServer     = "server"
)

// adminRequest is the body of the admin operations.
type adminRequest struct {
	Node  string `json:"node,omitempty"`
	Force bool   `json:"force,omitempty"`
	// On: standby (opStandby) or disabled (opServer); Server: which one.
	On     bool           `json:"on,omitempty"`
	Server *fsm.ServerRef `json:"server,omitempty"`
	By     string         `json:"by,omitempty"`
}

// SetStandby puts node in standby (no new connections; never DC while
// another node can direct) or takes it out.
func (n *Node) SetStandby(ctx context.Context, node string, standby bool) error {
	return n.admin(ctx, opStandby, adminRequest{Node: node, On: standby, By: n.cfg.Name}, nil)
}

// SetServerDisabled disables a real server (no new connections) or
// enables it again.
func (n *Node) SetServerDisabled(ctx context.Context, ref fsm.ServerRef, disabled bool) error {
	return n.admin(ctx, opServer, adminRequest{Server: &ref, On: disabled, By: n.cfg.Name}, nil)
}

// ErrRefused marks an operator's request the cluster refuses as it
// stands (the reason says what to do); it changes nothing.
var ErrRefused = errors.New("refused")

// RemoveNode removes name from Raft and the registry for good, as
// crm_node -R does: for a node that is gone (powered off, reinstalled).
// A node gossip sees alive is refused unless force: it would rejoin, or
// the operator meant another node. The DC is refused: move the DC first.
func (n *Node) RemoveNode(ctx context.Context, name string, force bool) error {
	return n.admin(ctx, opRemoveNode, adminRequest{Node: name, Force: force}, nil)
}

// MoveDC hands the DC role to the node named to (any node that can
// direct when to is empty), with the graceful hand-over of a clean stop,
// and returns the new DC.
func (n *Node) MoveDC(ctx context.Context, to string) (string, error) {
	var moved string
	err := n.admin(ctx, opMoveDC, adminRequest{Node: to}, &moved)
	return moved, err
}

func (n *Node) admin(ctx context.Context, op string, req adminRequest, out *string) error {
	if n.IsLeader() {
		res, err := n.serveAdmin(ctx, op, req)
		if out != nil {
			*out = res
		}
		return err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := n.forward(ctx, rpcRequest{Op: op, Body: body})
	if err != nil {
		return err // a refusal keeps its identity (ErrRefused) across the RPC
	}
	if out != nil {
		*out = resp.Name
	}
	return nil
}

// serveAdmin carries out an operator's request on the DC.
func (n *Node) serveAdmin(ctx context.Context, op string, req adminRequest) (string, error) {
	switch op {
	case opRemoveNode:
		return "", n.removeNode(ctx, req.Node, req.Force)
	case opMoveDC:
		return n.moveDC(req.Node)
	case opStandby:
		_, err := n.Commit(fsm.CmdNodeStandby, fsm.NodeStandby{Node: req.Node, Standby: req.On, By: req.By, At: time.Now().UTC()})
		if err == nil {
			n.logger.Warn("node standby changed by an operator", "peer", req.Node, "standby", req.On, "asked_on", req.By)
		}
		return "", refusal(err)
	case opServer:
		if req.Server == nil {
			return "", fmt.Errorf("%w: which real server?", ErrRefused)
		}
		_, err := n.Commit(fsm.CmdServerDisable, fsm.ServerDisable{ServerRef: *req.Server, Disabled: req.On, By: req.By, At: time.Now().UTC()})
		if err == nil {
			n.logger.Warn("real server changed by an operator", "server", req.Server.String(), "disabled", req.On, "asked_on", req.By)
		}
		return "", refusal(err)
	}
	return "", fmt.Errorf("unknown operation %q", op)
}

func (n *Node) removeNode(ctx context.Context, name string, force bool) error {
	if name == n.cfg.Name {
		return fmt.Errorf("%w: %s is the DC: move the DC first (raftlb dc move), or run raftlb leave on it", ErrRefused, name)
	}
	if _, in := configuration(n.raft)[name]; !in {
		if _, registered := n.fsm.State().Nodes[name]; !registered {
			return fmt.Errorf("%w: %s is not a node of this cluster", ErrRefused, name)
		}
	}
	for _, m := range n.members() {
		if m.Name == name && (m.State == memberlist.StateAlive || m.State == memberlist.StateSuspect) && !n.gossip.hasLeft(name) && !force {
			return fmt.Errorf("%w: %s is online (gossip sees it alive): stop its agent first, run raftlb leave on it, or --force", ErrRefused, name)
		}
	}
	n.gossip.markLeft(name)
	if err := n.removeServer(ctx, name); err != nil {
		n.gossip.unmarkLeft(name)
		return fmt.Errorf("remove %s: %w", name, err)
	}
	n.logger.Warn("node removed by an operator", "peer", name, "forced", force)
	return nil
}

func (n *Node) moveDC(to string) (string, error) {
	can := slices.DeleteFunc(n.Directors(), func(d string) bool { return d == n.cfg.Name })
	switch {
	case to == n.cfg.Name:
		return n.cfg.Name, fmt.Errorf("%w: %s is the DC already", ErrRefused, to)
	case to == "" && len(can) == 0:
		return "", fmt.Errorf("%w: no other node can direct (online voters with a data plane, not in standby)", ErrRefused)
	case to == "":
		to = n.preferredOf(can)
	case !slices.Contains(can, to):
		return "", fmt.Errorf("%w: %s cannot take the DC role: it is not an online voter that can direct (those are: %s)", ErrRefused, to, strings.Join(can, ", "))
	}
	var addr raft.ServerAddress
	for id, s := range configuration(n.raft) {
		if id == to {
			addr = s.Address
		}
	}
	n.logger.Info("moving the DC on an operator's request", "to", to)
	if !n.handOverTo(raft.ServerID(to), addr) {
		return "", fmt.Errorf("moving the DC to %s failed; this node is still DC", to)
	}
	return to, nil
}

// preferredOf picks, among nodes that can direct, the spec's preferred
// DC if it is one, else the first.
func (n *Node) preferredOf(can []string) string {
	if p := n.fsm.Spec().Policy.PreferredDC; slices.Contains(can, p) {
		return p
	}
	return can[0]
}

// refusal marks the FSM's refusal of an operator's request (a validation
// or schema error) as ErrRefused.
func refusal(err error) error {
	var ve *spec.ValidationError
	var se *fsm.SchemaError
	if errors.As(err, &ve) || errors.As(err, &se) {
		var ce *CommitError
		if errors.As(err, &ce) {
			err = ce.Err // the FSM's words, without Commit's "commit TYPE: "
		}
		// The refusal, not the validation, is what the caller acts on (the
		// API answers 409, as for a forwarded one).
		return fmt.Errorf("%w: %v", ErrRefused, err)
	}
	return err
}

// configuration is the Raft configuration by server name.
func configuration(r *raft.Raft) map[string]raft.Server {
	out := map[string]raft.Server{}
	if f := r.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			out[string(s.ID)] = s
		}
	}
	return out
}
