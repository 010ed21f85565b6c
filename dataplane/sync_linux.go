package dataplane

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/moby/ipvs"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// SyncRequestTimeout bounds how long one sync daemon request waits for the
// kernel's answer (vishvananda/netlink's own sockets wait 60 s). Starting
// and stopping a daemon takes the kernel's RTNL and sync locks and waits
// for a kernel thread; the DC's term makes these calls before it places
// its VIPs, so a kernel that is slow to answer costs the takeover this
// long at most, then an error is logged and the next reconcile or audit
// tries again.
const SyncRequestTimeout = 5 * time.Second

// The IPVS generic-netlink family's sync daemon commands and attributes
// (include/uapi/linux/ip_vs.h). moby/ipvs names the commands but has no
// calls for them; these three are all raftlb needs.
const (
	ipvsGenlVersion = 1

	ipvsCmdNewDaemon = 9
	ipvsCmdDelDaemon = 10
	ipvsCmdGetDaemon = 11

	ipvsCmdAttrDaemon = 3

	ipvsDaemonAttrState    = 1 // u32: IP_VS_STATE_MASTER or _BACKUP
	ipvsDaemonAttrMcastIfn = 2 // string: the multicast interface
	ipvsDaemonAttrSyncID   = 3 // u32: the sync id (0…255)
)

// KernelSync drives the kernel's IPVS sync daemons over generic netlink,
// in the network namespace of the calling thread. Each call is one
// request on a socket of its own (execute): they are rare (a role switch,
// an audit).
type KernelSync struct {
	family uint16
	mu     sync.Mutex   // a moby/ipvs handle is not safe for concurrent calls
	config *ipvs.Handle // the timeouts (moby/ipvs's GetConfig)
}

// NewKernelSync resolves the IPVS generic-netlink family.
func NewKernelSync() (*KernelSync, error) {
	f, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("IPVS generic netlink family (is the ip_vs module loaded?): %w", err)
	}
	h, err := ipvs.New("")
	if err != nil {
		return nil, fmt.Errorf("open IPVS: %w", err)
	}
	return &KernelSync{family: f.ID, config: h}, nil
}

// Close releases the netlink socket of the timeouts.
func (k *KernelSync) Close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.config.Close()
}

// TCPTimeout implements ConnSync.
func (k *KernelSync) TCPTimeout() (time.Duration, error) {
	k.mu.Lock()
	c, err := k.config.GetConfig()
	k.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("reading the IPVS timeouts: %w", err)
	}
	return c.TimeoutTCP, nil
}

// execute sends req on a socket of its own, opened in the calling
// thread's network namespace, whose waits are bounded by
// SyncRequestTimeout.
func (k *KernelSync) execute(req *nl.NetlinkRequest, resType uint16) ([][]byte, error) {
	s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("generic netlink socket: %w", err)
	}
	defer s.Close()
	tv := unix.NsecToTimeval(SyncRequestTimeout.Nanoseconds())
	if err := errors.Join(s.SetSendTimeout(&tv), s.SetReceiveTimeout(&tv)); err != nil {
		return nil, fmt.Errorf("generic netlink socket timeouts: %w", err)
	}
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_GENERIC: {Socket: s}}
	msgs, err := req.Execute(unix.NETLINK_GENERIC, resType)
	if errors.Is(err, unix.EAGAIN) {
		return nil, fmt.Errorf("the kernel did not answer within %s: %w", SyncRequestTimeout, err)
	}
	return msgs, err
}

func (k *KernelSync) request(cmd uint8, flags int, daemon []*nl.RtAttr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(int(k.family), flags)
	req.AddData(&nl.Genlmsg{Command: cmd, Version: ipvsGenlVersion})
	if daemon != nil {
		d := nl.NewRtAttr(ipvsCmdAttrDaemon|unix.NLA_F_NESTED, nil)
		for _, a := range daemon {
			d.AddChild(a)
		}
		req.AddData(d)
	}
	return req
}

// SyncDaemons implements ConnSync (IPVS_CMD_GET_DAEMON, one answer per
// running daemon).
func (k *KernelSync) SyncDaemons() ([]SyncDaemon, error) {
	msgs, err := k.execute(k.request(ipvsCmdGetDaemon, unix.NLM_F_DUMP, nil), k.family)
	if err != nil {
		return nil, fmt.Errorf("IPVS_CMD_GET_DAEMON: %w", err)
	}
	var out []SyncDaemon
	for _, m := range msgs {
		d, err := parseSyncDaemon(m)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// parseSyncDaemon decodes one IPVS_CMD_GET_DAEMON answer: the generic
// netlink header, then the daemon's nested attributes. It uses
// mdlayher/netlink's bounds-checked decoder: vishvananda/netlink's
// ParseRouteAttr panics on a truncated attribute (FuzzParseSyncDaemon).
func parseSyncDaemon(m []byte) (SyncDaemon, error) {
	var d SyncDaemon
	if len(m) < nl.SizeofGenlmsg {
		return d, fmt.Errorf("IPVS sync daemon answer of %d bytes", len(m))
	}
	ad, err := mdnetlink.NewAttributeDecoder(m[nl.SizeofGenlmsg:])
	if err != nil {
		return d, fmt.Errorf("IPVS sync daemon answer: %w", err)
	}
	found := false
	for ad.Next() {
		if ad.Type() != ipvsCmdAttrDaemon || found {
			continue
		}
		found = true
		ad.Nested(func(nad *mdnetlink.AttributeDecoder) error {
			for nad.Next() {
				switch nad.Type() {
				case ipvsDaemonAttrState:
					d.Role = SyncRole(nad.Uint32())
				case ipvsDaemonAttrMcastIfn:
					d.Interface = nad.String()
				case ipvsDaemonAttrSyncID:
					d.ID = uint8(nad.Uint32())
				}
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return SyncDaemon{}, fmt.Errorf("IPVS sync daemon answer: %w", err)
	}
	if !found {
		return d, errors.New("IPVS sync daemon answer without daemon attributes")
	}
	return d, nil
}

// StartSyncDaemon implements ConnSync (IPVS_CMD_NEW_DAEMON, with the
// kernel's default multicast group 224.0.0.81 and port 8848).
func (k *KernelSync) StartSyncDaemon(d SyncDaemon) error {
	if err := ValidSyncDaemon(d); err != nil {
		return err
	}
	req := k.request(ipvsCmdNewDaemon, unix.NLM_F_ACK, []*nl.RtAttr{
		nl.NewRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(d.Role))),
		nl.NewRtAttr(ipvsDaemonAttrMcastIfn, nl.ZeroTerminated(d.Interface)),
		nl.NewRtAttr(ipvsDaemonAttrSyncID, nl.Uint32Attr(uint32(d.ID))),
	})
	if _, err := k.execute(req, 0); err != nil {
		return fmt.Errorf("IPVS_CMD_NEW_DAEMON (%s): %w", d, err)
	}
	return nil
}

// StopSyncDaemon implements ConnSync (IPVS_CMD_DEL_DAEMON).
func (k *KernelSync) StopSyncDaemon(role SyncRole) error {
	req := k.request(ipvsCmdDelDaemon, unix.NLM_F_ACK, []*nl.RtAttr{
		nl.NewRtAttr(ipvsDaemonAttrState, nl.Uint32Attr(uint32(role))),
	})
	if _, err := k.execute(req, 0); err != nil {
		return fmt.Errorf("IPVS_CMD_DEL_DAEMON (%s): %w", role, err)
	}
	return nil
}

// Conns implements ConnSync: the connection table of the calling thread's
// network namespace (/proc/net would be the process's).
func (k *KernelSync) Conns() ([]Conn, error) {
	b, err := os.ReadFile("/proc/thread-self/net/ip_vs_conn")
	if err != nil {
		return nil, fmt.Errorf("reading the IPVS connection table: %w", err)
	}
	return ParseConns(b)
}
