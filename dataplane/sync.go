package dataplane

import (
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"time"
)

// SyncRole is the part a node's kernel plays in IPVS connection
// synchronisation: the DC's kernel sends every connection it balances to
// the others (master), the others keep a copy (backup), so that the next
// DC forwards an established connection's next packet to the same real
// server instead of answering it with a reset. The values are the kernel's
// IP_VS_STATE_MASTER and IP_VS_STATE_BACKUP.
type SyncRole uint32

// The roles; SyncNone runs no daemon.
const (
	SyncNone   SyncRole = 0
	SyncMaster SyncRole = 1
	SyncBackup SyncRole = 2
)

func (r SyncRole) String() string {
	switch r {
	case SyncNone:
		return "none"
	case SyncMaster:
		return "master"
	case SyncBackup:
		return "backup"
	}
	return fmt.Sprintf("role(%d)", uint32(r))
}

// SyncDaemon is one of the kernel's sync daemons: its role, the interface
// its multicast goes out of (master) or is read from (backup), and the
// sync id that keeps two clusters on one segment apart (a backup takes
// only messages with its id).
type SyncDaemon struct {
	Role      SyncRole
	Interface string
	ID        uint8
}

func (d SyncDaemon) String() string {
	return fmt.Sprintf("%s on %s, sync id %d", d.Role, d.Interface, d.ID)
}

// ConnSync starts, stops and lists the kernel's IPVS sync daemons
// (ipvsadm --start-daemon, --stop-daemon, -L --daemon), and reads the
// connection table they keep in step (ipvsadm -Lnc).
type ConnSync interface {
	SyncDaemons() ([]SyncDaemon, error)
	StartSyncDaemon(SyncDaemon) error
	StopSyncDaemon(SyncRole) error
	Conns() ([]Conn, error)
	// TCPTimeout is how long an established TCP connection's entry lives
	// without a packet (ipvsadm --set's first value).
	TCPTimeout() (time.Duration, error)
}

// MaxIfaceName is the longest interface name the kernel takes (IFNAMSIZ
// less the terminating NUL).
const MaxIfaceName = 15

// ValidSyncDaemon checks what the kernel would refuse, so the refusal
// comes with a reason: a role, an interface name, a sync id above 0 (a
// backup with id 0 takes every cluster's messages).
func ValidSyncDaemon(d SyncDaemon) error {
	switch {
	case d.Role != SyncMaster && d.Role != SyncBackup:
		return fmt.Errorf("IPVS sync daemon: role %s is neither master nor backup", d.Role)
	case d.Interface == "" || len(d.Interface) > MaxIfaceName:
		return fmt.Errorf("IPVS sync daemon: interface name %q must have 1 to %d characters", d.Interface, MaxIfaceName)
	case d.ID == 0:
		return errors.New("IPVS sync daemon: sync id 0 would take every cluster's connections on the segment: use 1 to 255")
	}
	return nil
}

// SetSyncRole makes the kernel run exactly the daemon want asks for (none
// when want.Role is SyncNone): the other role's daemon is stopped first —
// a DC's kernel must not run a backup, whose backup_only setting turns its
// balancing off, and a backup must not send —, and a daemon of the right
// role on another interface or with another id is restarted. It reports
// whether it changed anything.
func SetSyncRole(k ConnSync, want SyncDaemon) (bool, error) {
	if want.Role != SyncNone {
		if err := ValidSyncDaemon(want); err != nil {
			return false, err
		}
	}
	running, err := k.SyncDaemons()
	if err != nil {
		return false, fmt.Errorf("reading the IPVS sync daemons: %w", err)
	}
	changed := false
	for _, d := range running {
		if d == want {
			continue
		}
		if err := k.StopSyncDaemon(d.Role); err != nil {
			return changed, fmt.Errorf("stopping the IPVS sync daemon (%s): %w", d, err)
		}
		changed = true
	}
	if want.Role == SyncNone || slices.Contains(running, want) {
		return changed, nil
	}
	if err := k.StartSyncDaemon(want); err != nil {
		return changed, fmt.Errorf("starting the IPVS sync daemon (%s): %w", want, err)
	}
	return true, nil
}

// SyncIDOf derives a sync id in 1…255 from something every node of one
// cluster shares and another cluster does not (the cluster CA's
// certificate): two clusters on one segment then keep their connections
// apart without an operator choosing numbers, as keepalived derives its
// default from the VRRP instance's router id.
func SyncIDOf(cluster []byte) uint8 {
	h := fnv.New32a()
	h.Write(cluster)
	return uint8(h.Sum32()%255) + 1
}
