package director

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	rspec "github.com/raftlb/raftlb/spec"
)

// A node that cannot direct — a witness, a node without a data plane, a
// node that lacks the interface of a VIP or whose claim the kernel refused
// — never stays DC while one that can is reachable: its term hands
// leadership over at once. When no node can, it says so (and a node with a
// data plane tries anyway: better than nobody).

// missingInterface is a VIP of the spec whose interface a node lacks; a
// list of them is a member's answer to checkSpecOp.
type missingInterface struct {
	VIP       netip.Addr `json:"vip"`
	Interface string     `json:"interface"`
}

func (m missingInterface) String() string { return fmt.Sprintf("%s on %s", m.VIP, m.Interface) }

// missingInterfaces lists, for spec, the VIPs whose interface this node
// lacks.
func (d *Director) missingInterfaces(spec rspec.Spec) []missingInterface {
	if d.dp == nil {
		return nil
	}
	var out []missingInterface
	for _, v := range spec.VIPs {
		iface := d.ifaceOf(v)
		if !d.dp.RS.HasInterface(iface) {
			out = append(out, missingInterface{VIP: v.Address, Interface: iface})
		}
	}
	return out
}

// checkCanDirect tells the peers whether this node can hold the spec's
// VIPs: not while an interface is missing, nor for a while after a claim
// failed (until the spec changes or noDirectRetry passed).
func (d *Director) checkCanDirect(spec rspec.Spec) {
	if d.dp == nil {
		return
	}
	if missing := d.missingInterfaces(spec); len(missing) > 0 {
		names := make([]string, len(missing))
		for i, m := range missing {
			names[i] = m.String()
		}
		d.c.SetCannotDirect("this node lacks the interface of VIP " + strings.Join(names, ", "))
		return
	}
	d.noDirectMu.Lock()
	failed, version, at := d.claimFailed, d.claimFailedVersion, d.claimFailedAt
	if failed != "" && (version != spec.Version || time.Since(at) > noDirectRetry) {
		d.claimFailed = ""
		failed = ""
	}
	d.noDirectMu.Unlock()
	d.c.SetCannotDirect(failed)
}

// noDirectRetry is how long a node whose claim failed keeps saying it
// cannot direct, unless the spec changes first.
const noDirectRetry = time.Minute

// claimFailedNow records that this node's claim failed: it cannot direct
// until the spec changes or noDirectRetry has passed.
func (d *Director) claimFailedNow(err error) {
	d.cannotDirectNow("claiming the VIPs failed: " + err.Error())
}

// maybeMove hands the DC role on, with the graceful hand-over, when this
// node is put in standby (to any node that can direct, the preferred one
// first), or when the spec's preferred DC preempts and can direct. While
// the move cannot be made the node stays DC, says so, and tries again on
// the next change.
func (t *term) maybeMove() {
	me, policy := t.d.c.Name(), t.d.c.FSM().Spec().Policy
	var to, why string
	switch {
	case t.d.c.FSM().InStandby(me):
		why = "this node is in standby"
	case policy.Preempt && policy.PreferredDC != me && slices.Contains(t.d.c.Directors(), policy.PreferredDC):
		to, why = policy.PreferredDC, "the preferred DC "+policy.PreferredDC+" can direct (preempt)"
	default:
		return
	}
	if !t.moving.CompareAndSwap(false, true) {
		return
	}
	t.log.Warn("moving the DC role", "why", why, "to", to)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		moved, err := t.d.c.MoveDC(t.ctx, to)
		if err != nil {
			t.moving.Store(false)
			t.log.Error("the DC role could not be moved: this node stays DC", "why", why, "err", err)
			return
		}
		t.log.Info("DC role moved", "to", moved, "why", why)
	}()
}

// otherDirector is a live voter other than this node that can direct.
func (t *term) otherDirector() (string, bool) {
	dirs := slices.DeleteFunc(t.d.c.Directors(), func(n string) bool { return n == t.d.c.Name() })
	if len(dirs) == 0 {
		return "", false
	}
	return dirs[0], true
}

// handOff hands leadership to a node that can direct, if one is
// reachable, and reports whether it did.
func (t *term) handOff(why string) bool {
	to, ok := t.otherDirector()
	if !ok {
		return false
	}
	t.log.Warn("this node cannot direct: handing leadership to one that can", "to", to, "why", why)
	if err := t.d.c.TransferLeadershipTo(to, why); err != nil {
		t.log.Warn("handing leadership to a node that can direct failed", "to", to, "err", err)
		return false
	}
	return true
}

// startHandOff runs, for a term that cannot direct at all (no data
// plane), until leadership is handed to a node that can: at once (before
// it returns), then on every membership change and every
// MembershipInterval.
func (t *term) startHandOff(ctx context.Context, why string) {
	changes, unsubscribe := t.d.c.SubscribeMembership()
	if t.handOff(why) {
		unsubscribe()
		return
	}
	t.log.Error("DC that cannot direct, and no node that can is reachable: nobody holds the VIPs", "why", why)
	t.onMembership(ctx, changes, unsubscribe, false, func() bool { return t.handOff(why) })
}

// checkSpecOp is the RPC operation on which the DC asks a member whether
// it could carry a spec about to be applied (its interfaces).
const checkSpecOp = "check-spec"

// serveCheckSpec answers, for a spec the DC is about to apply, what this
// node lacks to carry it. (Releases before the answer was typed sent
// "vip on iface" strings: such a member's answer does not decode, and the
// DC leaves it out, as one that does not answer.)
func (d *Director) serveCheckSpec(_ context.Context, _ string, body json.RawMessage) (any, error) {
	var spec rspec.Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		return nil, fmt.Errorf("check-spec request: %w", err)
	}
	missing := d.missingInterfaces(spec)
	if missing == nil {
		missing = []missingInterface{}
	}
	return missing, nil
}

// checkProgramsOp is the RPC operation on which the DC asks a member
// whether its own configuration lets the spec's programs run there: the
// exec checks' commands and the fence devices' agents. The spec names the
// programs; each node's configuration decides, and the spec cannot widen
// it (procrun.Allow).
const checkProgramsOp = "check-programs"

// ProgramChecker is a Fencer that can say whether a fence device may run
// on this node: its agent, its options (fencing.Runner).
type ProgramChecker interface {
	CheckDevice(d rspec.FenceDevice) error
}

// programProblems lists what of spec's programs this node would not run.
func (d *Director) programProblems(spec rspec.Spec) []rspec.Problem {
	var out []rspec.Problem
	for i, svc := range spec.Services {
		hc := svc.HealthCheck
		if hc == nil || hc.Type != rspec.CheckExec || len(hc.Command) == 0 {
			continue
		}
		if err := d.cfg.Exec.Permit(hc.Command[0]); err != nil {
			out = append(out, rspec.Problem{Path: fmt.Sprintf("services[%d].health_check.command[0]", i), Message: err.Error()})
		}
	}
	out = append(out, d.resourceProblems(spec)...)
	// A Fencer that cannot say (a test's) has no objection.
	if checker, ok := d.cfg.Fencer.(ProgramChecker); ok {
		for i, dev := range spec.Fencing.Devices {
			if err := checker.CheckDevice(dev); err != nil {
				out = append(out, rspec.Problem{Path: fmt.Sprintf("fencing.devices[%d]", i), Message: err.Error()})
			}
		}
	}
	return out
}

func (d *Director) serveCheckPrograms(_ context.Context, _ string, body json.RawMessage) (any, error) {
	var spec rspec.Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		return nil, fmt.Errorf("check-programs request: %w", err)
	}
	problems := d.programProblems(spec)
	if problems == nil {
		problems = []rspec.Problem{}
	}
	return problems, nil
}

// checkSpecTimeout bounds the question to each member.
const checkSpecTimeout = 2 * time.Second

// CheckSpec is run by the DC before it commits a spec: every live member
// with a data plane must have each VIP's interface. A member that does not
// answer in time is left out (it says so itself once the spec arrives);
// the problems name the VIP, the interface and the nodes.
func (d *Director) CheckSpec(ctx context.Context, spec rspec.Spec) []rspec.Problem {
	members := d.c.LiveMembers()
	type answer struct {
		node            string
		missing         []missingInterface
		programs        []rspec.Problem
		err, programErr error
	}
	answers := make(chan answer, len(members))
	for node, canDirect := range members {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, checkSpecTimeout)
			defer cancel()
			a := answer{node: node}
			a.err = d.c.CallNode(cctx, node, checkSpecOp, spec, &a.missing)
			// Only a node that can direct ever runs the spec's programs.
			if canDirect && needsPrograms(spec) {
				a.programErr = d.c.CallNode(cctx, node, checkProgramsOp, spec, &a.programs)
			}
			answers <- a
		}()
	}
	byVIP := map[missingInterface][]string{}
	byProblem := map[rspec.Problem][]string{}
	for range members {
		a := <-answers
		if a.programErr != nil {
			// An older release does not know the question; a node that
			// does not answer checks again before it runs anything.
			d.logger.Warn("could not ask a member whether it lets the spec's programs run", "node", a.node, "err", a.programErr)
		}
		if a.err != nil {
			d.logger.Warn("could not ask a member whether it has the spec's interfaces", "node", a.node, "err", a.err)
		}
		for _, m := range a.missing {
			byVIP[m] = append(byVIP[m], a.node)
		}
		for _, p := range a.programs {
			byProblem[p] = append(byProblem[p], a.node)
		}
	}
	var problems []rspec.Problem
	for i, v := range spec.VIPs {
		for m, nodes := range byVIP {
			if m.VIP == v.Address {
				slices.Sort(nodes)
				problems = append(problems, rspec.Problem{
					Path:    fmt.Sprintf("vips[%d].interface", i),
					Message: fmt.Sprintf("%s is missing on %s: no node could hold %s there", m.Interface, strings.Join(nodes, ", "), v.Address),
				})
			}
		}
	}
	var programs []rspec.Problem
	for p, nodes := range byProblem {
		slices.Sort(nodes)
		programs = append(programs, rspec.Problem{Path: p.Path, Message: fmt.Sprintf("not allowed on %s: %s", strings.Join(nodes, ", "), p.Message)})
	}
	slices.SortFunc(programs, func(a, b rspec.Problem) int { return strings.Compare(a.Path+a.Message, b.Path+b.Message) })
	return append(problems, programs...)
}

// needsPrograms says whether spec names programs a node runs.
func needsPrograms(spec rspec.Spec) bool {
	for _, svc := range spec.Services {
		if hc := svc.HealthCheck; hc != nil && hc.Type == rspec.CheckExec {
			return true
		}
	}
	return len(spec.Fencing.Devices) > 0 || len(spec.Resources) > 0
}
