// Package fsm owns raftlb's replicated state and implements raft.FSM: the
// operator's spec as committed (package spec defines it), the node
// registry, the VIP holders, the fence history and device checks,
// maintenance (standby, disabled servers) and revoked certificates.
//
// The package is pure. Apply only decodes a committed command, checks it and
// changes in-memory state; it does no I/O, touches no kernel, starts no
// goroutines or timers and never reads the clock (a command that needs a
// time, such as Node.JoinedAt, carries it from the proposer). That is what
// makes every node compute the same state from the same log. The director
// and realserver packages react to changes through Subscribe and State.
//
// Commands travel in a small typed, versioned envelope (see EncodeCommand).
// An entry this version cannot decode crashes Apply rather than letting the
// node silently diverge, unless the proposer marked it safe to ignore.
//
// Validation is part of the state machine: Apply re-checks every spec
// (spec.Spec.Validate and ValidateMembers) and every node and record it is
// given, so those rules must only change together with a new command type
// or envelope version, or nodes running different releases could disagree
// on which commands took effect.
package fsm
