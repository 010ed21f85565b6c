package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The sync daemon's kernel tests reuse the lease tests' two namespaces
// (lease_linux_test.go): A balances, B keeps a copy. They need IPVS, which
// the development machines' kernel lacks; the lab runs them on its kernel
// (lab/nftlease_test.go), where none may skip.

func newSyncLab(t *testing.T) (*leaseLab, *KernelSync, *KernelSync) {
	t.Helper()
	l := newLeaseLab(t)
	var ka, kb *KernelSync
	if err := leaseInNS(l.a, func() (err error) { ka, err = NewKernelSync(); return err }); err != nil {
		t.Skipf("no IPVS in this kernel: %v", err)
	}
	if err := leaseInNS(l.b, func() (err error) { kb, err = NewKernelSync(); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = leaseInNS(l.a, func() error { _, err := SetSyncRole(ka, SyncDaemon{}); return err })
		_ = leaseInNS(l.b, func() error { _, err := SetSyncRole(kb, SyncDaemon{}); return err })
	})
	return l, ka, kb
}

// TestSyncKernelRoles: the role switches a DC's term makes, as the kernel
// reports them (IPVS_CMD_GET_DAEMON): backup, then master alone, then a
// restart for a new sync id, then none; a daemon on an interface that does
// not exist is refused with the kernel's reason and starts nothing.
func TestSyncKernelRoles(t *testing.T) {
	l, ka, _ := newSyncLab(t)
	inA := func(fn func() error) {
		t.Helper()
		if err := leaseInNS(l.a, fn); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, daemons ...SyncDaemon) {
		t.Helper()
		inA(func() error {
			got, err := ka.SyncDaemons()
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != fmt.Sprint(daemons) {
				t.Errorf("%s: the kernel runs %v, want %v", what, got, daemons)
			}
			return nil
		})
	}
	// ask is SetSyncRole as the director uses it: a request the kernel
	// does not answer within SyncRequestTimeout fails, and the next
	// reconcile or audit asks again, until the kernel has answered.
	// (Stopping a daemon in the lab's emulated CPU has taken longer.)
	ask := func(d SyncDaemon) error {
		t.Helper()
		start := time.Now()
		for {
			var err error
			inA(func() error { _, err = SetSyncRole(ka, d); return nil })
			if !errors.Is(err, unix.EAGAIN) || time.Since(start) > 3*time.Minute {
				return err
			}
			t.Logf("after %s, asking again: %v", time.Since(start).Round(time.Millisecond), err)
		}
	}
	switchTo := func(d SyncDaemon) {
		t.Helper()
		if err := ask(d); err != nil {
			t.Fatal(err)
		}
	}
	backup := SyncDaemon{Role: SyncBackup, Interface: "lva", ID: 7}
	master := SyncDaemon{Role: SyncMaster, Interface: "lva", ID: 7}
	switchTo(backup)
	want("a follower", backup)
	switchTo(master)
	want("the DC", master)
	inA(func() error {
		changed, err := SetSyncRole(ka, master)
		if err == nil && changed {
			t.Error("setting the role the kernel has changed something")
		}
		return err
	})
	master8 := master
	master8.ID = 8
	switchTo(master8)
	want("a new sync id", master8)
	if err := ask(SyncDaemon{Role: SyncBackup, Interface: "nosuch0", ID: 7}); err == nil || !strings.Contains(err.Error(), "nosuch0") {
		t.Errorf("a daemon on a missing interface: %v, want an error naming it", err)
	}
	want("after the refusal")
	switchTo(SyncDaemon{})
	want("none")
}

// TestSyncKernelConnectionReachesTheBackup: a connection A balances
// (a service on A whose real server is A itself) appears in B's
// connection table through the sync daemons, with its client, VIP and
// real server — what the next DC forwards an established connection's
// next packet by. Its figure is how long the kernel took to send it.
func TestSyncKernelConnectionReachesTheBackup(t *testing.T) {
	l, ka, kb := newSyncLab(t)
	vip, rs := leaseVIP4, "10.200.0.1"
	const port = 8080
	var ln net.Listener
	inA := func(fn func() error) {
		t.Helper()
		if err := leaseInNS(l.a, fn); err != nil {
			t.Fatal(err)
		}
	}
	inA(func() error {
		for k, v := range map[string]string{"sync_refresh_period": "10", "sync_threshold": "3 0"} {
			if err := os.WriteFile("/proc/sys/net/ipv4/vs/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		k, err := NewKernelIPVS()
		if err != nil {
			return err
		}
		defer k.Close()
		key := ServiceKey{VIP: vip, Port: port, Protocol: ProtocolTCP}
		if err := k.AddService(Service{Key: key, Scheduler: "rr"}); err != nil {
			return err
		}
		if err := k.AddDest(key, Dest{Addr: netip.MustParseAddr(rs), Port: port, Weight: 1, Forward: ForwardRoute}); err != nil {
			return err
		}
		if _, err := SetSyncRole(ka, SyncDaemon{Role: SyncMaster, Interface: "lva", ID: 9}); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", port))
		return err
	})
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); bufio.NewReader(c).ReadString('\n') }()
		}
	}()
	var conn net.Conn
	if err := leaseInNS(l.b, func() error {
		if _, err := SetSyncRole(kb, SyncDaemon{Role: SyncBackup, Interface: "lvb", ID: 9}); err != nil {
			return err
		}
		var err error
		d := testkit.NamespaceDialer(t)
		d.Timeout = 5 * time.Second
		conn, err = d.Dial("tcp", netip.AddrPortFrom(vip, port).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	want := Conn{Proto: "TCP", Client: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), VIP: netip.AddrPortFrom(vip, port),
		Dest: netip.AddrPortFrom(netip.MustParseAddr(rs), port), State: "ESTABLISHED"}
	var seen []Conn
	testkit.WaitForWithin(t, 10*time.Second, "the connection in the backup's table", func() bool {
		_ = leaseInNS(l.b, func() (err error) { seen, err = kb.Conns(); return err })
		return slices.ContainsFunc(seen, func(c Conn) bool { return c.Key() == want.Key() && c.State == want.State })
	})
	fmt.Printf("figure: ipvs_sync_delay = %.0f ms\n", float64(time.Since(start).Microseconds())/1000)
}

// encodeSyncDaemon is an IPVS_CMD_GET_DAEMON answer as the kernel writes
// it: the generic netlink header, the daemon's nested attributes.
func encodeSyncDaemon(d SyncDaemon) []byte {
	n := nl.NewRtAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, nil)
	n.AddRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(d.Role)))
	n.AddRtAttr(ipvsDaemonAttrMcastIfn, nl.ZeroTerminated(d.Interface))
	n.AddRtAttr(ipvsDaemonAttrSyncID, nl.Uint32Attr(uint32(d.ID)))
	return append([]byte{ipvsCmdGetDaemon, ipvsGenlVersion, 0, 0}, n.Serialize()...)
}

func TestParseSyncDaemon(t *testing.T) {
	d := SyncDaemon{Role: SyncBackup, Interface: "eth0", ID: 42}
	got, err := parseSyncDaemon(encodeSyncDaemon(d))
	if err != nil || got != d {
		t.Errorf("round trip: %+v, %v; want %+v", got, err, d)
	}
	for _, bad := range [][]byte{nil, {11, 1}, {11, 1, 0, 0}, {11, 1, 0, 0, 8, 0, 1, 0}} {
		if _, err := parseSyncDaemon(bad); err == nil {
			t.Errorf("%v: parsed", bad)
		}
	}
}

// FuzzParseSyncDaemon: the decoder of the kernel's answers never panics
// and reads back what it is given intact.
func FuzzParseSyncDaemon(f *testing.F) {
	f.Add(encodeSyncDaemon(SyncDaemon{Role: SyncMaster, Interface: "eth0", ID: 1}))
	f.Add(encodeSyncDaemon(SyncDaemon{Role: SyncBackup, Interface: "bond0.100", ID: 255}))
	f.Add([]byte{11, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := parseSyncDaemon(b)
		if err != nil {
			return
		}
		if d.Role == SyncMaster || d.Role == SyncBackup {
			if again, err := parseSyncDaemon(encodeSyncDaemon(d)); err != nil || again != d {
				t.Errorf("%+v: encoded and parsed again %+v, %v", d, again, err)
			}
		}
	})
}
