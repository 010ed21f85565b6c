// Package resources runs the spec's resources — what must run on the DC
// and nowhere else: Heartbeat's haresources, Pacemaker's resource group.
// An OCF resource agent (Debian's resource-agents: Filesystem, IPaddr2,
// Dummy, …) runs unchanged, as Pacemaker runs it: OCF_ROOT/resource.d/
// PROVIDER/TYPE ACTION, the parameters as OCF_RESKEY_*, the OCF exit
// codes. An operator's own command is called with the action as its last
// argument and answers the same way. Each run has no shell, a process
// group of its own that the action's timeout kills whole, and only the
// programs the node's own configuration allows (procrun.Allow).
//
// Group orders a node's resources: start in order, stop in reverse,
// monitor while started, and remembers what a failed stop left behind.
// When to start and stop is the director's: only the verified DC starts
// anything.
package resources
