package watchdog

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The device itself is proven in the kernel lab (TestRaftlbWatchdog,
// softdog); here: what Open refuses before anything is armed.
func TestOpenRefuses(t *testing.T) {
	notADevice := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(notADevice, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		timeout    time.Duration
		want       string
	}{
		{"part of a second", notADevice, 1500 * time.Millisecond, "whole seconds"},
		{"below a second", notADevice, 500 * time.Millisecond, "at least 1s"},
		{"no such device", filepath.Join(t.TempDir(), "none"), 5 * time.Second, "no such file"},
		{"not a watchdog", notADevice, 5 * time.Second, "setting the timeout to 5s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := Open(tc.path, tc.timeout)
			if err == nil {
				t.Fatalf("Open(%s, %s) armed %+v, want an error", tc.path, tc.timeout, d)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Open(%s, %s): %v, want it to say %q", tc.path, tc.timeout, err, tc.want)
			}
		})
	}
}
