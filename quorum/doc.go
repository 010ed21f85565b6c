// Package quorum decides whether this node may act on the cluster's behalf:
// whether it has quorum (a majority of Raft voters for a leader, recent
// contact with a known leader for a follower), and the lease arithmetic that lets a cut-off DC release its VIP before anyone else can
// be elected (invariant 3 of ARCHITECTURE.md).
//
// It is pure on purpose: no I/O, no goroutines, no timers and no clock.
// Callers pass in what they observed, times included, and get back a
// decision. That keeps the rule that prevents split brain small enough to
// read in one sitting and lets table-driven tests cover every boundary
// without a cluster, a network or a wall clock.
package quorum
