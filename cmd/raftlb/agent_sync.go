package main

// IPVS connection synchronisation: its flags, checked at parse, and the
// director's settings from them.

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/director"
)

// checkSync refuses sync settings that cannot be meant: an id outside
// 0…255 (the kernel's is one byte), an interface name the kernel would
// not take, or either given with --ipvs-sync=false.
func (f *agentFlags) checkSync(fs *flag.FlagSet) error {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case !f.ipvsSync && (set["ipvs-sync-interface"] || set["ipvs-sync-id"]):
		return errors.New("--ipvs-sync-interface and --ipvs-sync-id go with --ipvs-sync (on by default): drop them, or --ipvs-sync=false")
	case f.ipvsSyncID < 0 || f.ipvsSyncID > 255:
		return fmt.Errorf("--ipvs-sync-id %d: want 1 to 255 (the kernel's sync id is one byte), or 0 to derive it from the cluster CA", f.ipvsSyncID)
	case len(f.ipvsSyncIface) > dataplane.MaxIfaceName:
		return fmt.Errorf("--ipvs-sync-interface %q: an interface name has at most %d characters", f.ipvsSyncIface, dataplane.MaxIfaceName)
	}
	return nil
}

// insecureSyncID is the sync id of clusters run with --insecure and no
// --ipvs-sync-id: they have no CA to derive one from. Two such trial
// clusters on one segment need an id each.
const insecureSyncID = 1

// connSync is the director's connection sync for the kernel k: the
// interface (--ipvs-sync-interface, else the one holding --bind, which
// must exist) and the id (--ipvs-sync-id, else derived from the cluster
// CA's certificate, which every node has and another cluster does not).
// nil with --ipvs-sync=false.
func (f *agentFlags) connSync(k dataplane.ConnSync) (*director.ConnSync, error) {
	if !f.ipvsSync {
		return nil, nil
	}
	s := &director.ConnSync{Kernel: k, Interface: f.ipvsSyncIface}
	if s.Interface == "" {
		name, err := interfaceHolding(f.bind)
		if err != nil {
			return nil, fmt.Errorf("IPVS connection sync: %w; name one with --ipvs-sync-interface, or turn it off with --ipvs-sync=false", err)
		}
		s.Interface = name
	} else if _, err := net.InterfaceByName(s.Interface); err != nil {
		return nil, fmt.Errorf("--ipvs-sync-interface %s: %w", s.Interface, err)
	}
	id, err := f.syncID()
	if err != nil {
		return nil, err
	}
	s.ID = id
	return s, nil
}

// syncID is --ipvs-sync-id, else derived from the cluster CA's
// certificate, else (--insecure) insecureSyncID.
func (f *agentFlags) syncID() (uint8, error) {
	switch {
	case f.ipvsSyncID != 0:
		return uint8(f.ipvsSyncID), nil
	case f.tlsDir != "":
		ca, err := os.ReadFile(filepath.Join(f.tlsDir, "ca.pem"))
		if err != nil {
			return 0, fmt.Errorf("IPVS connection sync id from the cluster CA: %w", err)
		}
		return dataplane.SyncIDOf(ca), nil
	}
	return insecureSyncID, nil
}

// interfaceHolding names the interface that has the address addr.
func interfaceHolding(addr string) (string, error) {
	want, err := netip.ParseAddr(addr)
	if err != nil {
		return "", fmt.Errorf("--bind %q: %w", addr, err)
	}
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", fmt.Errorf("listing interfaces: %w", err)
	}
	for _, i := range ifaces {
		addrs, err := i.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == want.Unmap() {
				return i.Name, nil
			}
		}
	}
	return "", fmt.Errorf("no interface holds --bind %s", addr)
}
