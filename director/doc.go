// Package director owns the DC's term (term.go): everything a node does
// from gaining leadership in a Raft term to losing it — barrier,
// membership, health checks, the VIP claim with its gratuitous ARP, the
// IPVS table reconciled by diff — in one place and in a fixed order, and
// undone in reverse, the VIPs first. It runs on every node; a node without
// a data plane runs only the membership step while DC.
//
// The kernel side — the IPVS table, its diff and writes, the ARP sender —
// is package dataplane; this package decides what the table should be
// (Desired) and when a write is allowed.
//
// Nothing here writes to the kernel unless the node has verified, in the
// current Raft term, that it is leader (invariant 2 of ARCHITECTURE.md),
// and only the DC ever has IPVS rules for a VIP (invariant 6).
package director
