package dataplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestSetSyncRole: the role switches a term makes leave exactly one daemon
// of the role asked for, stopping the other role's first (a DC's kernel
// must not keep a backup, whose backup_only turns its balancing off), and
// touch nothing when the kernel already runs what is asked.
func TestSetSyncRole(t *testing.T) {
	f := &FakeSync{}
	backup := SyncDaemon{Role: SyncBackup, Interface: "eth0", ID: 7}
	master := SyncDaemon{Role: SyncMaster, Interface: "eth0", ID: 7}
	steps := []struct {
		want    SyncDaemon
		changed bool
		calls   []string
	}{
		{backup, true, []string{"start backup on eth0, sync id 7"}},
		{backup, false, nil},
		{master, true, []string{"stop backup", "start master on eth0, sync id 7"}},
		{SyncDaemon{Role: SyncMaster, Interface: "eth1", ID: 7}, true, []string{"stop master", "start master on eth1, sync id 7"}},
		{SyncDaemon{}, true, []string{"stop master"}},
		{SyncDaemon{}, false, nil},
	}
	for i, s := range steps {
		before := len(f.Calls())
		changed, err := SetSyncRole(f, s.want)
		if err != nil {
			t.Fatalf("step %d (%v): %v", i, s.want, err)
		}
		if got := f.Calls()[before:]; changed != s.changed || !slices.Equal(got, s.calls) {
			t.Errorf("step %d (%v): changed %v with %q, want %v with %q", i, s.want, changed, got, s.changed, s.calls)
		}
		want := []SyncDaemon{s.want}
		if s.want.Role == SyncNone {
			want = nil
		}
		if got := f.Running(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("step %d: running %v, want %v", i, got, want)
		}
	}
}

// TestSetSyncRoleRefusals: what the kernel would refuse is refused with
// the reason, before anything is stopped; a kernel error is passed on
// with what was being done.
func TestSetSyncRoleRefusals(t *testing.T) {
	f := &FakeSync{}
	if _, err := SetSyncRole(f, SyncDaemon{Role: SyncBackup, Interface: "eth0", ID: 3}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    SyncDaemon
		want string
	}{
		{SyncDaemon{Role: SyncMaster, Interface: "eth0"}, "sync id 0"},
		{SyncDaemon{Role: SyncMaster, ID: 1}, "interface name"},
		{SyncDaemon{Role: SyncMaster, Interface: "a-name-too-long0", ID: 1}, "interface name"},
		{SyncDaemon{Role: 3, Interface: "eth0", ID: 1}, "neither master nor backup"},
	} {
		before := len(f.Calls())
		if _, err := SetSyncRole(f, tc.d); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error with %q", tc.d, err, tc.want)
		}
		if len(f.Calls()) != before {
			t.Errorf("%+v: refused, but the kernel was asked %q", tc.d, f.Calls()[before:])
		}
	}
	f.Err = errors.New("EPERM")
	if _, err := SetSyncRole(f, SyncDaemon{Role: SyncMaster, Interface: "eth0", ID: 3}); err == nil || !strings.Contains(err.Error(), "reading the IPVS sync daemons: EPERM") {
		t.Errorf("kernel error: %v", err)
	}
}

// TestSyncIDOf: a derived sync id is never 0 (which a backup reads as
// "take every cluster's messages") and is the same for the same cluster.
func TestSyncIDOf(t *testing.T) {
	seen := map[uint8]bool{}
	for i := range 2000 {
		ca := []byte(fmt.Sprintf("cluster CA %d", i))
		id := SyncIDOf(ca)
		if id == 0 || id != SyncIDOf(ca) {
			t.Fatalf("SyncIDOf(%q) = %d, then %d", ca, id, SyncIDOf(ca))
		}
		seen[id] = true
	}
	if len(seen) < 200 {
		t.Errorf("2000 clusters got only %d distinct sync ids", len(seen))
	}
}
