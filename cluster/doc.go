// Package cluster owns membership and consensus: memberlist gossip
// (membership, node metadata, failure detection), the Raft node (transport
// with mutual TLS, raft-boltdb v2 behind a LogCache, snapshots), bootstrap
// and join, the one place leadership events come from (each carrying the
// Raft term), the membership step the DC's term runs, the cluster's view
// (DC, quorum, nodes and roles), and an RPC channel on which other
// packages register operations of their own.
//
// It runs no leader duties by itself and never touches the kernel: the
// director owns the DC's term, and imports this package, never the other
// way round.
package cluster
