// Package spec is the operator's declarative configuration of a raftlb
// cluster: VIPs, IPVS virtual services, real servers, health checks, the
// quorum and takeover policy, fence devices and levels, and the resources
// that move with the DC. It validates a spec, reads and writes the
// services file (YAML) and describes what changed between two specs.
//
// spec is a leaf: it imports no other raftlb package and nothing of Raft,
// so every package that only reads the spec (health, realserver,
// resources, fencing) depends on it and not on the replicated state
// machine (fsm), which stores the spec as it was committed.
//
// Validation is part of the state machine: fsm's Apply re-checks every
// spec it is given with Validate and ValidateMembers, so the rules in
// validate.go must only change together with a new command type or
// envelope version, or nodes running different releases could disagree
// on which commands took effect. ValidateNew adds the rules only a spec
// proposed now must meet.
//
// ParseServices turns the operator's services file (YAML) into a fully
// explicit Spec; deploy/examples/services.yaml is the annotated example.
package spec
