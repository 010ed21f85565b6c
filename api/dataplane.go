package api

import (
	"net/http"

	"github.com/raftlb/raftlb/director"
)

// Dataplane is the node's view of its kernel data plane.
type Dataplane interface {
	// Table is the IPVS table for the VIPs this node manages: empty unless
	// it is the DC.
	Table() ([]director.Service, error)
	// Writes counts IPVS writes since the agent started.
	Writes() uint64
	// Reconciles counts the DC's comparisons of its table with the
	// kernel's since the agent started, whether they wrote or not.
	Reconciles() uint64
}

// IPVSResponse answers GET /v1/ipvs.
type IPVSResponse struct {
	Node            string             `json:"node"`
	WritesTotal     uint64             `json:"writes_total"`
	ReconcilesTotal uint64             `json:"reconciles_total"`
	Services        []director.Service `json:"services"`
}

func (s *Server) ipvs(w http.ResponseWriter, r *http.Request) {
	if s.dataplane == nil {
		writeError(w, http.StatusNotFound, director.ErrNoKernel)
		return
	}
	table, err := s.dataplane.Table()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, IPVSResponse{Node: s.agent.Name(), WritesTotal: s.dataplane.Writes(), ReconcilesTotal: s.dataplane.Reconciles(), Services: table})
}
