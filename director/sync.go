package director

import (
	"github.com/raftlb/raftlb/dataplane"
)

// ConnSync is the kernel's IPVS connection synchronisation as the director
// runs it: master while this node is DC, so every connection it balances
// reaches the others; backup otherwise, so the next DC forwards an
// established connection's next packet to the same real server instead of
// answering it with a reset. A backup's kernel does not balance
// (realserver's backup_only setting).
type ConnSync struct {
	Kernel    dataplane.ConnSync
	Interface string // the multicast goes out of and is read from this interface
	ID        uint8  // 1…255, the same on every node of the cluster
}

// syncAs switches the kernel's sync daemon to role, as the role this node
// plays changes: master in place (the term, before the VIPs go on their
// interface: a backup's kernel does not balance), backup in follow, none
// when the agent stops. It reads the kernel each time, so a daemon stopped
// behind raftlb's back is started again by the next reconcile or audit. A
// failure is logged and costs connections at the next failover, not the
// service.
func (d *Director) syncAs(role dataplane.SyncRole) {
	s := d.dp.Sync
	if s == nil {
		return
	}
	want := dataplane.SyncDaemon{Role: role, Interface: s.Interface, ID: s.ID}
	if role == dataplane.SyncNone {
		want = dataplane.SyncDaemon{}
	}
	changed, err := dataplane.SetSyncRole(s.Kernel, want)
	switch {
	case err != nil:
		d.logger.Error("IPVS connection sync: the kernel's daemon could not be switched; established connections may not survive the next change of DC", "role", role, "err", err)
	case changed && role == dataplane.SyncNone:
		d.logger.Info("IPVS connection sync stopped")
	case changed:
		d.logger.Info("IPVS connection sync: "+role.String()+" daemon running", "interface", s.Interface, "sync_id", s.ID)
	}
}
