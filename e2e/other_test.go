//go:build !linux

package e2e

import "testing"

// The e2e tests run agents bound to 127.0.N.x addresses, which only Linux
// routes to the loopback interface without setup, and read /proc.
func TestE2E(t *testing.T) {
	t.Skip("the e2e tests run on Linux only")
}
