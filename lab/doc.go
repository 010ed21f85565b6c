// Package lab is the kernel lab: tests of raftlb's kernel-facing parts
// (IPVS, addresses on lo and on the interface, ARP behaviour) against a
// real kernel, in a qemu VM that lab/run.sh boots with the host's root
// shared read-only. The host kernels this project is built on have no IPVS.
//
// The tests and their helpers carry the build tag "lab": a plain
// `go test ./...` skips them, and lab/run.sh compiles them with
// `go test -c -tags lab` and runs the binary inside the VM. See README.md.
package lab
