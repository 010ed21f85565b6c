package director

import "fmt"

// Watchdog is an armed watchdog device (watchdog.Device): fed to keep the
// machine running, disarmed with the magic close.
type Watchdog interface {
	Feed() error
	Disarm() error
}

// The optional watchdog, as sbd uses one: armed when a term takes the
// VIPs, fed only right after a verification of leadership (and by a
// frozen DC's renewals), disarmed once the term has released everything
// cleanly. An agent that hangs while it holds VIPs stops feeding it, and
// the machine resets when the timeout ends — the lease bounds what the
// kernel answers for, the watchdog what the machine does.

// arm opens the watchdog for this term, if one is configured.
func (t *term) arm() error {
	if t.d.cfg.Watchdog == nil || t.d.wd.Load() != nil {
		return nil
	}
	wd, err := t.d.cfg.Watchdog()
	if err != nil {
		return fmt.Errorf("arming the watchdog: %w", err)
	}
	t.d.wd.Store(&wd)
	t.log.Info("watchdog armed: fed after each verification of leadership")
	return nil
}

// feed feeds the watchdog, if armed.
func (d *Director) feed() {
	if p := d.wd.Load(); p != nil {
		if err := (*p).Feed(); err != nil {
			d.logger.Error("feeding the watchdog failed: the machine resets when its timeout ends", "err", err)
		}
	}
}

// disarm stops the watchdog after a clean release.
func (d *Director) disarm() {
	p := d.wd.Swap(nil)
	if p == nil {
		return
	}
	if err := (*p).Disarm(); err != nil {
		d.logger.Error("disarming the watchdog failed: the machine resets when its timeout ends", "err", err)
		return
	}
	d.logger.Info("watchdog disarmed")
}
