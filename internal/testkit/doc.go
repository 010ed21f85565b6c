// Package testkit holds what the tests of several packages share: the
// network sandbox (tests send traffic only to loopback, or to addresses
// inside network namespaces the test itself creates), waits on a
// condition, and a log buffer safe for concurrent writers.
//
// It is imported by tests only.
package testkit
