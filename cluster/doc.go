// Package cluster owns membership and consensus: memberlist gossip
// (membership, node metadata, failure detection), the Raft node (transport
// with mutual TLS, raft-boltdb v2 behind a LogCache, snapshots), bootstrap
// and join, and the one place leadership events come from, each carrying
// the Raft term.
//
// It never touches the kernel: the director and realserver packages react to
// what this package publishes.
package cluster
