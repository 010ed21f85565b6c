// Package dataplane is the kernel data plane a DC drives: the IPVS table —
// its types, plan and apply by diff, dump — with the kernel (moby/ipvs,
// netlink) and recording fake implementations, and the gratuitous ARP /
// unsolicited neighbour advertisement sender with its ARP watcher.
//
// It knows nothing of Raft, the spec or the term: the director computes the
// table it wants and decides when a write is allowed (the allowed callback
// of Apply); packages that only read the kernel table (the API, metrics,
// the status page, raftlb release) import this package and not the DC's.
package dataplane
