package realserver

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

var vip = netip.MustParseAddr("172.95.69.100")

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func vips() []spec.VIP { return []spec.VIP{{Address: vip, Interface: "eth0"}} }

// holdIt is the hold map of a DC that holds the test's VIP.
var holdIt = map[netip.Addr]bool{vip: true}

func has(t *testing.T, k *Fake, dev string) bool {
	t.Helper()
	a, err := k.Addrs(dev)
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(a, netip.PrefixFrom(vip, 32))
}

func TestStartSetsARPSysctlsAndTakesBackOldVIPs(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "vips.json")
	k := NewFake("eth0")
	// A previous run crashed while DC: the VIP is still on eth0.
	if err := os.WriteFile(state, []byte(`[{"address":"172.95.69.100","interface":"eth0"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = k.AddrAdd("eth0", netip.PrefixFrom(vip, 32))
	m := New(k, Config{Interface: "eth0", StateFile: state, Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if has(t, k, "eth0") || !has(t, k, "lo") {
		t.Fatalf("after start: eth0=%v lo=%v, want the VIP on lo only", has(t, k, "eth0"), has(t, k, "lo"))
	}
	if left := m.LeftByLastRun(); !slices.Equal(left, []netip.Addr{vip}) {
		t.Errorf("LeftByLastRun = %v, want [%s]: the DC is told this node let go", left, vip)
	}
	for _, key := range []string{"net/ipv4/conf/all/arp_ignore", "net/ipv4/conf/eth0/arp_ignore"} {
		if v, _ := k.Sysctl(key); v != "1" {
			t.Errorf("%s = %s, want 1", key, v)
		}
	}
	for _, key := range []string{"net/ipv4/conf/all/arp_announce", "net/ipv4/conf/eth0/arp_announce"} {
		if v, _ := k.Sysctl(key); v != "2" {
			t.Errorf("%s = %s, want 2", key, v)
		}
	}
	for _, key := range []string{"net/ipv4/vs/expire_nodest_conn", "net/ipv4/vs/expire_quiescent_template"} {
		if v, _ := k.Sysctl(key); v != "1" {
			t.Errorf("%s = %s, want 1", key, v)
		}
	}
}

func TestApplyMovesVIPBetweenLoAndInterface(t *testing.T) {
	k := NewFake("eth0")
	m := New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if !has(t, k, "lo") || has(t, k, "eth0") {
		t.Fatal("real server: want the VIP on lo only")
	}
	k.ResetWrites()
	if err := m.Apply(vips(), holdIt, time.Now()); err != nil {
		t.Fatal(err)
	}
	// On the interface, and still on lo: the node stays a real server
	// whatever becomes of the interface's copy.
	if want := []string{"add eth0 172.95.69.100/32"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("takeover wrote %v, want %v", k.Writes, want)
	}
	k.ResetWrites()
	if err := m.Apply(vips(), holdIt, time.Now()); err != nil {
		t.Fatal(err)
	}
	if len(k.Writes) != 0 {
		t.Fatalf("repeated apply wrote %v", k.Writes)
	}
	if err := m.Apply(vips(), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// Off the interface; lo keeps its copy.
	if want := []string{"del eth0 172.95.69.100/32"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("release wrote %v, want %v", k.Writes, want)
	}
	// A VIP that leaves the spec is removed everywhere.
	if err := m.Apply(nil, nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if has(t, k, "lo") || has(t, k, "eth0") {
		t.Fatal("a VIP no longer in the spec is still configured")
	}
}

func TestApplyRefusesVIPWithoutInterface(t *testing.T) {
	m := New(NewFake("eth0"), Config{StateFile: filepath.Join(t.TempDir(), "vips.json"), Logger: discard()})
	err := m.Apply([]spec.VIP{{Address: vip}}, nil, time.Time{})
	if err == nil || !strings.Contains(err.Error(), "--interface") {
		t.Fatalf("err = %v, want a hint about --interface", err)
	}
}

func TestShutdownRemovesVIPsBeforeRestoringSysctls(t *testing.T) {
	k := NewFake("eth0")
	_ = k.SetSysctl("net/ipv4/conf/all/arp_announce", "1") // the operator's value
	m := New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), nil, time.Time{}); err != nil {
		t.Fatal(err)
	}
	k.ResetWrites()
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	firstSysctl := slices.IndexFunc(k.Writes, func(w string) bool { return strings.HasPrefix(w, "sysctl") })
	lastDel := -1
	for i, w := range k.Writes {
		if strings.HasPrefix(w, "del ") {
			lastDel = i
		}
	}
	if lastDel < 0 || firstSysctl < lastDel {
		t.Fatalf("shutdown order %v: VIPs must be gone before arp_ignore is restored", k.Writes)
	}
	if v, _ := k.Sysctl("net/ipv4/conf/all/arp_announce"); v != "1" {
		t.Errorf("arp_announce restored to %s, want the operator's 1", v)
	}
	if v, _ := k.Sysctl("net/ipv4/conf/all/arp_ignore"); v != "0" {
		t.Errorf("arp_ignore restored to %s, want 0", v)
	}
	if v, _ := k.Sysctl("net/ipv4/vs/expire_nodest_conn"); v != "0" {
		t.Errorf("expire_nodest_conn restored to %s, want 0", v)
	}
}

func TestCorruptStateFileIsAnError(t *testing.T) {
	state := filepath.Join(t.TempDir(), "vips.json")
	_ = os.WriteFile(state, []byte("{not json"), 0o600)
	if err := New(NewFake("eth0"), Config{Interface: "eth0", StateFile: state, Logger: discard()}).Start(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v, want a corrupt-state error", err)
	}
}

// TestLeaseOnTheInterface: the DC's copy of a VIP carries the lease and is
// renewed in place; when no renewal comes, the kernel drops it by itself
// and lo keeps its copy; a renewal after a lapse puts it back and says so.
func TestLeaseOnTheInterface(t *testing.T) {
	k := NewFake("eth0")
	m := New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), Lease: time.Second, Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	k.ResetWrites()
	if err := m.Apply(vips(), holdIt, time.Now()); err != nil {
		t.Fatal(err)
	}
	if want := []string{"add lo 172.95.69.100/32", "lease eth0 172.95.69.100/32 1s"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("claim wrote %v, want %v", k.Writes, want)
	}
	k.ResetWrites()
	if lapsed, err := m.Renew(time.Now()); err != nil || len(lapsed) != 0 {
		t.Fatalf("renew: lapsed %v, %v", lapsed, err)
	}
	if want := []string{"renew eth0 172.95.69.100/32 1s"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("renew wrote %v, want %v (in place)", k.Writes, want)
	}
	// No renewal: the kernel drops the interface's copy; lo keeps its own.
	testkit.WaitFor(t, "the lease to run out", func() bool { return !has(t, k, "eth0") })
	if !has(t, k, "lo") || !slices.Contains(k.Writes, "expire eth0 172.95.69.100/32") {
		t.Fatalf("after the lease ran out: on lo %v, writes %v", has(t, k, "lo"), k.Writes)
	}
	if _, on, lo := m.Where(vip); on || !lo {
		t.Errorf("Where after the lapse: on the interface %v, on lo %v", on, lo)
	}
	lapsed, err := m.Renew(time.Now())
	if err != nil || !slices.Equal(lapsed, []netip.Addr{vip}) || m.Lapses() != 1 || !has(t, k, "eth0") {
		t.Fatalf("renew after the lapse: lapsed %v (%d in all), %v; on eth0 %v", lapsed, m.Lapses(), err, has(t, k, "eth0"))
	}
	if got := m.OnInterface(); !slices.Equal(got, []netip.Addr{vip}) {
		t.Errorf("OnInterface %v, want the VIP", got)
	}
}

// TestReleaseAfterTheAgent: what a supervisor runs after the agent died
// takes its VIPs off the interfaces and leaves lo and the sysctls alone.
func TestReleaseAfterTheAgent(t *testing.T) {
	k := NewFake("eth0")
	state := filepath.Join(t.TempDir(), "vips.json")
	m := New(k, Config{Interface: "eth0", StateFile: state, Lease: 10 * time.Second, Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), holdIt, time.Now()); err != nil {
		t.Fatal(err)
	}
	k.Detach() // the agent is gone; a new process runs release
	k.Attach()
	got, err := Release(k, state)
	if err != nil || !slices.Equal(got, []netip.Addr{vip}) {
		t.Fatalf("Release: %v, %v", got, err)
	}
	if has(t, k, "eth0") || !has(t, k, "lo") {
		t.Errorf("after release: on eth0 %v, on lo %v; want lo only", has(t, k, "eth0"), has(t, k, "lo"))
	}
	if v, _ := k.Sysctl("net/ipv4/conf/all/arp_ignore"); v != "1" {
		t.Errorf("release touched the sysctls: arp_ignore %s", v)
	}
	if got, err := Release(k, filepath.Join(t.TempDir(), "none.json")); err != nil || len(got) != 0 {
		t.Errorf("release without a state file: %v, %v", got, err)
	}
}

// TestConnSyncSysctls: a node that runs IPVS connection synchronisation
// sets its settings (backup_only above all: a copied entry must not make a
// real server balance) and restores the operator's on shutdown; a vector
// the kernel prints with a tab is not written again; a node without
// synchronisation leaves them alone.
func TestConnSyncSysctls(t *testing.T) {
	const backupOnly, threshold = "net/ipv4/vs/backup_only", "net/ipv4/vs/sync_threshold"
	k := NewFake("eth0")
	_ = k.SetSysctl(threshold, "3\t50") // the kernel's default, as it prints it
	m := New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), ConnSync: true, Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if v, _ := k.Sysctl(backupOnly); v != "1" {
		t.Errorf("backup_only = %s, want 1", v)
	}
	// A copy is bound to no real server: a reused port must not follow one.
	if v, _ := k.Sysctl("net/ipv4/vs/conn_reuse_mode"); v != "3" {
		t.Errorf("conn_reuse_mode = %s, want 3", v)
	}
	_ = k.SetSysctl(threshold, "3\t0") // read back as the kernel prints it
	k.ResetWrites()
	if err := m.applySysctls(); err != nil { // as for a VIP on a new interface
		t.Fatal(err)
	}
	if slices.ContainsFunc(k.Writes, func(w string) bool { return strings.HasPrefix(w, "sysctl") }) {
		t.Errorf("settings already in place written again: %v", k.Writes)
	}
	if err := m.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if v, _ := k.Sysctl(backupOnly); v != "0" {
		t.Errorf("backup_only restored to %s, want 0", v)
	}
	if v, _ := k.Sysctl(threshold); v != "3\t50" {
		t.Errorf("sync_threshold restored to %q, want the kernel's default", v)
	}

	k = NewFake("eth0")
	m = New(k, Config{Interface: "eth0", StateFile: filepath.Join(t.TempDir(), "vips.json"), Logger: discard()})
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(k.Writes, func(w string) bool { return strings.Contains(w, "vs/sync_") || strings.Contains(w, backupOnly) }) {
		t.Errorf("a node without synchronisation set its settings: %v", k.Writes)
	}
}
