package dataplane

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/moby/ipvs"
)

// TestToKernelService: what the director asks the kernel for, field by
// field as netlink carries it, and read back the same. The kernel lab
// checks the same services with ipvsadm -Ln.
func TestToKernelService(t *testing.T) {
	v4 := netip.MustParseAddr("127.0.0.100")
	v6 := netip.MustParseAddr("::1")
	for _, tc := range []struct {
		name      string
		svc       Service
		proto     uint16
		family    uint16
		flags     uint32
		timeout   uint32
		maskBytes []byte // the netmask attribute as the kernel reads it (network order)
		mask6     uint32
	}{
		{
			name:  "tcp, not persistent",
			svc:   Service{Key: ServiceKey{VIP: v4, Port: 3128, Protocol: ProtocolTCP}, Scheduler: "rr"},
			proto: syscall.IPPROTO_TCP, family: syscall.AF_INET, maskBytes: []byte{255, 255, 255, 255},
		},
		{
			name: "udp, persistent 20 s with a /24 mask",
			svc: Service{Key: ServiceKey{VIP: v4, Port: 53, Protocol: ProtocolUDP}, Scheduler: "wlc",
				Persistence: 20 * time.Second, Netmask: netip.MustParseAddr("255.255.255.0")},
			proto: syscall.IPPROTO_UDP, family: syscall.AF_INET, flags: svcFlagPersistent, timeout: 20,
			maskBytes: []byte{255, 255, 255, 0},
		},
		{
			name:  "persistent without a mask: /32",
			svc:   Service{Key: ServiceKey{VIP: v4, Port: 80, Protocol: ProtocolTCP}, Scheduler: "sh", Persistence: 300 * time.Second},
			proto: syscall.IPPROTO_TCP, family: syscall.AF_INET, flags: svcFlagPersistent, timeout: 300,
			maskBytes: []byte{255, 255, 255, 255},
		},
		{
			name:  "IPv6, persistent: the mask is a prefix length",
			svc:   Service{Key: ServiceKey{VIP: v6, Port: 443, Protocol: ProtocolTCP}, Scheduler: "mh", Persistence: time.Minute},
			proto: syscall.IPPROTO_TCP, family: syscall.AF_INET6, flags: svcFlagPersistent, timeout: 60, mask6: 128,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := toKernelService(tc.svc)
			if ks.Protocol != tc.proto || ks.AddressFamily != tc.family || ks.Port != tc.svc.Key.Port || ks.SchedName != tc.svc.Scheduler {
				t.Errorf("protocol %d family %d port %d scheduler %q, want %d %d %d %q",
					ks.Protocol, ks.AddressFamily, ks.Port, ks.SchedName, tc.proto, tc.family, tc.svc.Key.Port, tc.svc.Scheduler)
			}
			if ks.Flags != tc.flags || ks.Timeout != tc.timeout {
				t.Errorf("flags %#x timeout %d, want %#x %d", ks.Flags, ks.Timeout, tc.flags, tc.timeout)
			}
			if got := fromIP(ks.Address); got != tc.svc.Key.VIP {
				t.Errorf("address %s, want %s", got, tc.svc.Key.VIP)
			}
			if tc.family == syscall.AF_INET {
				// moby/ipvs writes the attribute in host order; the
				// kernel reads those bytes as a network-order mask.
				var b [4]byte
				binary.NativeEndian.PutUint32(b[:], ks.Netmask)
				if netip.AddrFrom4(b) != netip.AddrFrom4([4]byte(tc.maskBytes)) {
					t.Errorf("netmask as the kernel reads it %v, want %v", b, tc.maskBytes)
				}
			} else if ks.Netmask != tc.mask6 {
				t.Errorf("IPv6 netmask %d, want %d", ks.Netmask, tc.mask6)
			}
			back := fromKernelService(ks)
			want := tc.svc
			if want.Persistence > 0 && want.Key.VIP.Is4() && !want.Netmask.IsValid() {
				want.Netmask = netip.MustParseAddr("255.255.255.255")
			}
			if back.Key != want.Key || back.Scheduler != want.Scheduler || back.Persistence != want.Persistence || back.Netmask != want.Netmask {
				t.Errorf("read back %+v, want %+v", back, want)
			}
		})
	}
}

func TestToKernelDest(t *testing.T) {
	for fwd, flag := range map[string]uint32{
		ForwardRoute:  ipvs.ConnectionFlagDirectRoute,
		ForwardMasq:   ipvs.ConnectionFlagMasq,
		ForwardTunnel: ipvs.ConnectionFlagTunnel,
	} {
		kd := toKernelDest(Dest{Addr: netip.MustParseAddr("127.0.0.30"), Port: 3128, Weight: 5, Forward: fwd})
		if kd.ConnectionFlags != flag || kd.Weight != 5 || kd.Port != 3128 || kd.AddressFamily != syscall.AF_INET {
			t.Errorf("%s: %+v, want flags %#x weight 5 port 3128 AF_INET", fwd, kd, flag)
		}
		if got := fwdName(kd.ConnectionFlags); got != fwd {
			t.Errorf("%s read back as %s", fwd, got)
		}
	}
	if got := fwdName(ipvs.ConnectionFlagLocalNode); got != ForwardLocal {
		t.Errorf("a local real server reads back as %q, want %q", got, ForwardLocal)
	}
}

func TestReleaseRemovesOnlyTheVIPsServices(t *testing.T) {
	k := NewFakeIPVS()
	mine := ServiceKey{VIP: netip.MustParseAddr("172.95.69.100"), Port: 3128, Protocol: "tcp"}
	theirs := ServiceKey{VIP: netip.MustParseAddr("172.95.69.200"), Port: 80, Protocol: "tcp"}
	_ = k.AddService(Service{Key: mine, Scheduler: "rr"})
	_ = k.AddService(Service{Key: theirs, Scheduler: "rr"})
	n, err := Release(k, []netip.Addr{mine.VIP})
	tab, _ := k.Services()
	if err != nil || n != 1 || len(tab) != 1 || tab[0].Key != theirs {
		t.Fatalf("Release: %d removed, %v; left %+v", n, err, tab)
	}
}
