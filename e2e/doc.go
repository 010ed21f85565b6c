// Package e2e tests raftlb end to end: real agent processes on loopback,
// driven only through the raftlb command line, the way an operator would.
//
// The tests build the binary once per run (see TestMain), give every test
// its own loopback block 127.0.N.x and free ports, and run the agents with
// --dataplane none, so they need neither root nor a kernel with IPVS. They
// run on Linux only.
//
//	go test ./e2e                                        # the CLI tests
//	go test ./e2e -run '^$' -bench Failover -benchtime 1x  # failover figures
//
// The package holds no code outside its tests.
package e2e
