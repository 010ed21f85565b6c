// Package director is the DC's leader loop: Barrier, verify leadership,
// claim the VIPs (address on the interface, gratuitous ARP bursts and a
// periodic refresh), reconcile the IPVS table by diff, and on revoke flush
// this node's IPVS services for its VIPs and give the VIPs back to lo.
//
// Nothing here writes to the kernel unless the node has verified, in the
// current Raft term, that it is leader (DESIGN invariant 2), and only the
// DC ever has IPVS rules for a VIP (invariant 6).
package director
