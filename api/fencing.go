package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/spec"
)

// Fencing is the operators' fencing commands, carried out by the DC.
type Fencing interface {
	// Fence asks the DC to fence node; it answers once the intent is
	// committed, with the history's entry (no result yet).
	Fence(ctx context.Context, node, action string) (fsm.FenceEvent, error)
	// Confirm records an operator's word that node is down.
	Confirm(ctx context.Context, node string) (fsm.FenceEvent, error)
	// FenceHistory is the replicated fencing history, oldest first.
	FenceHistory() []fsm.FenceEvent
}

// FenceRequest is the body of POST /v1/fence.
type FenceRequest struct {
	Node string `json:"node"`
	// Action is off or reboot; empty keeps the devices' own.
	Action string `json:"action,omitempty"`
}

// ConfirmRequest is the body of POST /v1/fence/confirm.
type ConfirmRequest struct {
	Node string `json:"node"`
}

// FenceHistoryResponse answers GET /v1/fence/history (and is `raftlb fence
// history --json`).
type FenceHistoryResponse struct {
	Events []fsm.FenceEvent `json:"events"`
}

// SetFencing enables the fencing endpoints.
func (s *Server) SetFencing(f Fencing) { s.fencing = f }

func (s *Server) fenceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/fence", s.fence)
	mux.HandleFunc("POST /v1/fence/confirm", s.fenceConfirm)
	mux.HandleFunc("GET /v1/fence/history", s.fenceHistory)
}

// errNoFencing: the agent was built without the fencing commands (tests).
var errNoFencing = errors.New("this agent does not serve the fencing commands")

func (s *Server) fence(w http.ResponseWriter, r *http.Request) {
	var req FenceRequest
	if !decodeBody(w, r, "fence request", &req) {
		return
	}
	if err := spec.ValidateNodeName(req.Node); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("fence request: %w", err))
		return
	}
	switch req.Action {
	case "", spec.FenceOff, spec.FenceReboot:
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("fence request: unknown action %q (want off or reboot)", req.Action))
		return
	}
	if s.fencing == nil {
		writeError(w, http.StatusNotImplemented, errNoFencing)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	ev, err := s.fencing.Fence(ctx, req.Node, req.Action)
	if err != nil {
		writeError(w, fenceStatusFor(err), err)
		return
	}
	s.logger.Warn("an operator asked for a node to be fenced", "node", req.Node, "action", ev.Action, "id", ev.ID)
	writeJSON(w, http.StatusAccepted, ev)
}

func (s *Server) fenceConfirm(w http.ResponseWriter, r *http.Request) {
	var req ConfirmRequest
	if !decodeBody(w, r, "confirm request", &req) {
		return
	}
	if err := spec.ValidateNodeName(req.Node); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("confirm request: %w", err))
		return
	}
	if s.fencing == nil {
		writeError(w, http.StatusNotImplemented, errNoFencing)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	ev, err := s.fencing.Confirm(ctx, req.Node)
	if err != nil {
		writeError(w, fenceStatusFor(err), err)
		return
	}
	s.logger.Warn("an operator confirmed a node is down", "node", req.Node, "id", ev.ID)
	writeJSON(w, http.StatusOK, ev)
}

func (s *Server) fenceHistory(w http.ResponseWriter, _ *http.Request) {
	if s.fencing == nil {
		writeError(w, http.StatusNotImplemented, errNoFencing)
		return
	}
	events := s.fencing.FenceHistory()
	if events == nil {
		events = []fsm.FenceEvent{}
	}
	writeJSON(w, http.StatusOK, FenceHistoryResponse{Events: events})
}

// fenceStatusFor: no DC is 503; anything else the DC refused is 422.
func fenceStatusFor(err error) int {
	if errors.Is(err, cluster.ErrNoDC) {
		return http.StatusServiceUnavailable
	}
	return http.StatusUnprocessableEntity
}

// decodeBody decodes a JSON body strictly, answering 400 when it cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, what string, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%s: %w", what, err))
		return false
	}
	return true
}

// Fence asks the agent to have node fenced; the answer is the intent.
func (c *Client) Fence(ctx context.Context, node, action string) (fsm.FenceEvent, error) {
	body, _ := json.Marshal(FenceRequest{Node: node, Action: action})
	var ev fsm.FenceEvent
	err := c.do(ctx, http.MethodPost, "/v1/fence", "application/json", body, &ev)
	return ev, err
}

// Confirm tells the cluster node is down.
func (c *Client) Confirm(ctx context.Context, node string) (fsm.FenceEvent, error) {
	body, _ := json.Marshal(ConfirmRequest{Node: node})
	var ev fsm.FenceEvent
	err := c.do(ctx, http.MethodPost, "/v1/fence/confirm", "application/json", body, &ev)
	return ev, err
}

// FenceHistory fetches the fencing history.
func (c *Client) FenceHistory(ctx context.Context) (FenceHistoryResponse, error) {
	var r FenceHistoryResponse
	err := c.do(ctx, http.MethodGet, "/v1/fence/history", "", nil, &r)
	return r, err
}
