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

	"github.com/raftlb/raftlb/fsm"
)

var vip = netip.MustParseAddr("172.95.69.100")

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func vips() []fsm.VIP { return []fsm.VIP{{Address: vip, Interface: "eth0"}} }

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
	m := New(k, "eth0", state, discard())
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if has(t, k, "eth0") || !has(t, k, "lo") {
		t.Fatalf("after start: eth0=%v lo=%v, want the VIP on lo only", has(t, k, "eth0"), has(t, k, "lo"))
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
	m := New(k, "eth0", filepath.Join(t.TempDir(), "vips.json"), discard())
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), false); err != nil {
		t.Fatal(err)
	}
	if !has(t, k, "lo") || has(t, k, "eth0") {
		t.Fatal("real server: want the VIP on lo only")
	}
	k.ResetWrites()
	if err := m.Apply(vips(), true); err != nil {
		t.Fatal(err)
	}
	// Add on the interface before removing from lo: never without the VIP.
	if want := []string{"add eth0 172.95.69.100/32", "del lo 172.95.69.100/32"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("takeover wrote %v, want %v", k.Writes, want)
	}
	k.ResetWrites()
	if err := m.Apply(vips(), true); err != nil {
		t.Fatal(err)
	}
	if len(k.Writes) != 0 {
		t.Fatalf("repeated apply wrote %v", k.Writes)
	}
	if err := m.Apply(vips(), false); err != nil {
		t.Fatal(err)
	}
	// Add on lo before removing from the interface.
	if want := []string{"add lo 172.95.69.100/32", "del eth0 172.95.69.100/32"}; !slices.Equal(k.Writes, want) {
		t.Fatalf("release wrote %v, want %v", k.Writes, want)
	}
	// A VIP that leaves the spec is removed everywhere.
	if err := m.Apply(nil, false); err != nil {
		t.Fatal(err)
	}
	if has(t, k, "lo") || has(t, k, "eth0") {
		t.Fatal("a VIP no longer in the spec is still configured")
	}
}

func TestApplyRefusesVIPWithoutInterface(t *testing.T) {
	m := New(NewFake("eth0"), "", filepath.Join(t.TempDir(), "vips.json"), discard())
	err := m.Apply([]fsm.VIP{{Address: vip}}, false)
	if err == nil || !strings.Contains(err.Error(), "--interface") {
		t.Fatalf("err = %v, want a hint about --interface", err)
	}
}

func TestShutdownRemovesVIPsBeforeRestoringSysctls(t *testing.T) {
	k := NewFake("eth0")
	_ = k.SetSysctl("net/ipv4/conf/all/arp_announce", "1") // the operator's value
	m := New(k, "eth0", filepath.Join(t.TempDir(), "vips.json"), discard())
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(vips(), false); err != nil {
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
	if err := New(NewFake("eth0"), "eth0", state, discard()).Start(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v, want a corrupt-state error", err)
	}
}
