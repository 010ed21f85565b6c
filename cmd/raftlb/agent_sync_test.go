package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/dataplane"
)

// TestConnSyncSettings: the sync runs on the interface holding --bind
// unless one is named, which must exist; its id is the one given, else
// the cluster CA's, the same for every node that has that CA.
func TestConnSyncSettings(t *testing.T) {
	k := &dataplane.FakeSync{}
	f := &agentFlags{ipvsSync: true, bind: "127.0.0.1", insecure: true}
	s, err := f.connSync(k)
	if err != nil || s.Interface != "lo" || s.ID != insecureSyncID {
		t.Fatalf("insecure, bound to loopback: %+v, %v; want lo with id %d", s, err, insecureSyncID)
	}
	f.ipvsSyncIface = "nosuch0"
	if _, err := f.connSync(k); err == nil || !strings.Contains(err.Error(), "--ipvs-sync-interface nosuch0") {
		t.Errorf("a missing interface: %v", err)
	}
	f.ipvsSyncIface, f.bind = "", "192.0.2.77"
	if _, err := f.connSync(k); err == nil || !strings.Contains(err.Error(), "no interface holds --bind 192.0.2.77") || !strings.Contains(err.Error(), "--ipvs-sync-interface") {
		t.Errorf("a --bind no interface holds: %v", err)
	}

	dir := t.TempDir()
	ca := []byte("-----BEGIN CERTIFICATE-----\nthe cluster CA\n-----END CERTIFICATE-----\n")
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	f = &agentFlags{ipvsSync: true, bind: "127.0.0.1", tlsDir: dir}
	if s, err := f.connSync(k); err != nil || s.ID != dataplane.SyncIDOf(ca) {
		t.Errorf("with a CA: %+v, %v; want id %d", s, err, dataplane.SyncIDOf(ca))
	}
	f.ipvsSyncID = 42
	if s, err := f.connSync(k); err != nil || s.ID != 42 {
		t.Errorf("--ipvs-sync-id 42: %+v, %v", s, err)
	}
	if s, err := (&agentFlags{}).connSync(k); s != nil || err != nil {
		t.Errorf("--ipvs-sync=false: %+v, %v; want no sync", s, err)
	}
}

// TestCheckSync: sync settings that cannot be meant are refused at parse.
func TestCheckSync(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ipvs-sync-id", "256"}, "--ipvs-sync-id 256: want 1 to 255"},
		{[]string{"--ipvs-sync-id", "-3"}, "--ipvs-sync-id -3: want 1 to 255"},
		{[]string{"--ipvs-sync=false", "--ipvs-sync-interface", "eth1"}, "go with --ipvs-sync"},
		{[]string{"--ipvs-sync-interface", "averyverylongname"}, "at most 15 characters"},
		{[]string{"--ipvs-sync-id", "255", "--ipvs-sync-interface", "eth1"}, ""},
	} {
		fs, f := newAgentFlagSet(io.Discard)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := f.checkSync(fs)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
}
