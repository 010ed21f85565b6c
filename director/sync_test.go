package director

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
)

// TestSyncRoleFollowsTheTerm: a follower's kernel keeps copies (backup);
// a DC's sends (master), started — and the backup stopped, whose kernel
// does not balance — before the VIP goes on its interface; at the end of
// the term the node keeps copies again.
func TestSyncRoleFollowsTheTerm(t *testing.T) {
	w := newWorld(t, nil)
	watch := w.d.dp.Sync.Kernel.(*syncWatch)
	backup := []dataplane.SyncDaemon{{Role: dataplane.SyncBackup, Interface: "eth0", ID: 7}}
	master := []dataplane.SyncDaemon{{Role: dataplane.SyncMaster, Interface: "eth0", ID: 7}}
	if err := w.d.follow(); err != nil { // Run's first step
		t.Fatal(err)
	}
	if got := w.sync.Running(); fmt.Sprint(got) != fmt.Sprint(backup) {
		t.Fatalf("a follower runs %v, want %v", got, backup)
	}
	tm := w.d.newTerm(2)
	if err := tm.establish(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := w.sync.Running(); fmt.Sprint(got) != fmt.Sprint(master) || !w.has("eth0") {
		t.Fatalf("the DC runs %v (VIP on eth0: %v), want %v", got, w.has("eth0"), master)
	}
	if got, want := watch.Started(), []string{"backup (VIP on eth0: false)", "master (VIP on eth0: false)"}; !slices.Equal(got, want) {
		t.Errorf("daemons started %q, want %q", got, want)
	}
	if calls := w.sync.Calls(); !slices.Equal(calls[1:3], []string{"stop backup", "start master on eth0, sync id 7"}) {
		t.Errorf("taking the DC role: %q, want the backup stopped before the master starts", calls)
	}
	tm.revoke()
	if got := w.sync.Running(); fmt.Sprint(got) != fmt.Sprint(backup) {
		t.Errorf("after the term the node runs %v, want %v", got, backup)
	}
}

// TestAuditRestartsTheSyncDaemon: a backup stopped behind raftlb's back
// (ipvsadm --stop-daemon) runs again after the follower's audit; a DC's
// master, after its next reconcile. A kernel that refuses is logged.
func TestAuditRestartsTheSyncDaemon(t *testing.T) {
	w := newWorld(t, nil)
	if err := w.d.follow(); err != nil {
		t.Fatal(err)
	}
	if err := w.sync.StopSyncDaemon(dataplane.SyncBackup); err != nil {
		t.Fatal(err)
	}
	w.d.audit()
	if got := w.sync.Running(); len(got) != 1 || got[0].Role != dataplane.SyncBackup {
		t.Errorf("after the audit the node runs %v, want the backup", got)
	}
	tm := w.established(2)
	if err := w.sync.StopSyncDaemon(dataplane.SyncMaster); err != nil {
		t.Fatal(err)
	}
	if err := tm.reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := w.sync.Running(); len(got) != 1 || got[0].Role != dataplane.SyncMaster {
		t.Errorf("after a reconcile the DC runs %v, want the master", got)
	}
	w.sync.Err = fmt.Errorf("operation not permitted")
	if err := tm.reconcile(); err != nil {
		t.Fatal(err) // a sync failure does not fail the table
	}
	if !strings.Contains(w.logs.String(), "IPVS connection sync: the kernel's daemon could not be switched") {
		t.Errorf("a refused switch is not logged:\n%s", w.logs.String())
	}
}
