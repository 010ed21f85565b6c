// Package watchdog drives a Linux watchdog device (/dev/watchdog, as sbd
// does): armed with a timeout, fed to keep the machine running, disarmed
// with the magic close. A machine whose agent stops feeding it resets when
// the timeout ends, whatever the agent is doing.
//
// github.com/mdlayher/watchdog opens only the primary device and cannot
// set the timeout, so this uses the kernel's ioctls (golang.org/x/sys)
// directly.
package watchdog

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Device is an armed watchdog.
type Device struct {
	f       *os.File
	path    string
	timeout time.Duration
}

// Open arms the watchdog at path with timeout (whole seconds): from now
// on the machine resets unless Feed is called at least every timeout.
func Open(path string, timeout time.Duration) (*Device, error) {
	if timeout < time.Second || timeout%time.Second != 0 {
		return nil, fmt.Errorf("watchdog timeout %s: whole seconds, at least 1s", timeout)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("watchdog %s: %w", path, err)
	}
	d := &Device{f: f, path: path}
	secs := int(timeout / time.Second)
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.WDIOC_SETTIMEOUT, secs); err != nil {
		_ = d.Disarm()
		return nil, fmt.Errorf("watchdog %s: setting the timeout to %s: %w", path, timeout, err)
	}
	got, err := unix.IoctlGetInt(int(f.Fd()), unix.WDIOC_GETTIMEOUT)
	if err != nil {
		_ = d.Disarm()
		return nil, fmt.Errorf("watchdog %s: reading the timeout back: %w", path, err)
	}
	// A device may round to what its hardware supports: shorter is only
	// stricter, longer would let a hung agent run on.
	if d.timeout = time.Duration(got) * time.Second; d.timeout > timeout {
		_ = d.Disarm()
		return nil, fmt.Errorf("watchdog %s: asked for a %s timeout, the device set %s", path, timeout, d.timeout)
	}
	if err := d.Feed(); err != nil {
		_ = d.Disarm()
		return nil, err
	}
	return d, nil
}

// Timeout is the timeout the device runs with.
func (d *Device) Timeout() time.Duration { return d.timeout }

// Feed restarts the device's countdown.
func (d *Device) Feed() error {
	if err := unix.IoctlWatchdogKeepalive(int(d.f.Fd())); err != nil {
		return fmt.Errorf("watchdog %s: feeding: %w", d.path, err)
	}
	return nil
}

// Disarm stops the device with the magic close ("V", then close): the
// machine keeps running without further feeding. A driver built with
// nowayout ignores it and resets the machine when the timeout ends.
func (d *Device) Disarm() error {
	_, werr := d.f.Write([]byte("V"))
	cerr := d.f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("watchdog %s: disarming: %w", d.path, err)
	}
	return nil
}
