package api

import (
	"net/http"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

// Dataplane is the node's view of its kernel data plane.
type Dataplane interface {
	// Table is the IPVS table for the VIPs this node manages: empty unless
	// it is the DC.
	Table() ([]dataplane.Service, error)
	// Writes counts IPVS writes since the agent started.
	Writes() uint64
	// Reconciles counts the DC's comparisons of its table with the
	// kernel's since the agent started, whether they wrote or not.
	Reconciles() uint64
}

// IPVSResponse answers GET /v1/ipvs (and is `raftlb ipvs --json`): a
// node's kernel table for its VIPs. Keys are snake_case and part of the
// CLI contract, as for the status.
type IPVSResponse struct {
	Node            string        `json:"node"`
	WritesTotal     uint64        `json:"writes_total"`
	ReconcilesTotal uint64        `json:"reconciles_total"`
	Services        []IPVSService `json:"services"`
}

// IPVSService is one virtual service in the kernel.
type IPVSService struct {
	Protocol  string `json:"protocol"` // tcp or udp
	VIP       string `json:"vip"`
	Port      uint16 `json:"port"`
	Scheduler string `json:"scheduler"`
	// PersistenceS is the persistence timeout in seconds (0: none), with
	// the netmask that groups clients (IPv4, when not a single address).
	PersistenceS int64            `json:"persistence_s"`
	Netmask      string           `json:"netmask,omitempty"`
	RealServers  []IPVSRealServer `json:"real_servers"`
}

// IPVSRealServer is one real server of a service in the kernel.
type IPVSRealServer struct {
	Address       string `json:"address"`
	Port          uint16 `json:"port"`
	Weight        int    `json:"weight"`
	Forward       string `json:"forward"` // route, masq, tunnel, or local (the node itself)
	ActiveConns   int    `json:"active_conns"`
	InactiveConns int    `json:"inactive_conns"`
}

func ipvsServices(table []dataplane.Service) []IPVSService {
	out := make([]IPVSService, 0, len(table))
	for _, s := range table {
		svc := IPVSService{
			Protocol: s.Key.Protocol, VIP: s.Key.VIP.String(), Port: s.Key.Port, Scheduler: s.Scheduler,
			PersistenceS: int64(s.Persistence / time.Second), RealServers: []IPVSRealServer{},
		}
		if s.Persistence > 0 && s.Netmask.IsValid() && s.Netmask.String() != "255.255.255.255" {
			svc.Netmask = s.Netmask.String()
		}
		for _, d := range s.Dests {
			svc.RealServers = append(svc.RealServers, IPVSRealServer{
				Address: d.Addr.String(), Port: d.Port, Weight: d.Weight, Forward: d.Forward,
				ActiveConns: d.ActiveConns, InactiveConns: d.InactiveConns,
			})
		}
		out = append(out, svc)
	}
	return out
}

func (s *Server) ipvs(w http.ResponseWriter, r *http.Request) {
	if s.dataplane == nil {
		writeError(w, http.StatusNotFound, dataplane.ErrNoKernel)
		return
	}
	table, err := s.dataplane.Table()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, IPVSResponse{Node: s.agent.Name(), WritesTotal: s.dataplane.Writes(), ReconcilesTotal: s.dataplane.Reconciles(), Services: ipvsServices(table)})
}
