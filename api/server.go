package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/fsm"
	"github.com/raftlb/raftlb/status"
)

// Agent is what the API needs from the running node.
type Agent interface {
	Name() string
	Status() status.Status
	ApplySpec(ctx context.Context, spec fsm.Spec, expectVersion uint64) (cluster.ApplyResult, error)
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
}

// maxBody bounds every request body.
const maxBody = 1 << 20

// requestTimeout bounds apply, join and leave.
const requestTimeout = 15 * time.Second

// maxJoinTimeout caps what a join request may ask for.
const maxJoinTimeout = 10 * time.Minute

// ApplyResponse answers POST /v1/apply.
type ApplyResponse struct {
	SpecVersion uint64 `json:"spec_version"`
	Changed     bool   `json:"changed"`
}

// JoinRequest is the body of POST /v1/join.
type JoinRequest struct {
	Addresses []string `json:"addresses"`
	// TimeoutMS bounds the join (retries included); 0 means 15 s.
	TimeoutMS int64 `json:"timeout_ms,omitempty"`
}

// JoinResponse answers POST /v1/join.
type JoinResponse struct {
	Contacted int `json:"contacted"`
}

// ErrorResponse is the body of every non-2xx answer.
type ErrorResponse struct {
	Error    string        `json:"error"`
	Problems []fsm.Problem `json:"problems,omitempty"`
}

// Server serves the admin API.
type Server struct {
	agent     Agent
	dataplane Dataplane
	fencing   Fencing
	left      func()
	logger    *slog.Logger
	http      *http.Server
}

// NewServer builds the API. left is called after a successful leave so the
// agent can shut down.
func NewServer(agent Agent, left func(), logger *slog.Logger) *Server {
	s := &Server{agent: agent, left: left, logger: logger.With("component", "api")}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/apply", s.apply)
	mux.HandleFunc("POST /v1/join", s.join)
	mux.HandleFunc("POST /v1/leave", s.leave)
	mux.HandleFunc("GET /v1/ipvs", s.ipvs)
	s.fenceRoutes(mux)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	return s
}

// SetDataplane makes GET /v1/ipvs answer from dp; without it the agent
// runs with --dataplane none and the endpoint says so.
func (s *Server) SetDataplane(dp Dataplane) { s.dataplane = dp }

// Serve serves on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	if err := s.http.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// Shutdown stops accepting requests and waits for those in flight.
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.agent.Status())
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("services file too large or unreadable (limit %d bytes): %w", maxBody, err))
		return
	}
	var expect uint64
	if v := r.URL.Query().Get("expect_version"); v != "" {
		if expect, err = strconv.ParseUint(v, 10, 64); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("expect_version %q is not a number", v))
			return
		}
	}
	spec, err := fsm.ParseServices(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	res, err := s.agent.ApplySpec(ctx, spec, expect)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	if res.Changed {
		s.logger.Info("services applied", "spec_version", res.Version)
	}
	writeJSON(w, http.StatusOK, ApplyResponse{SpecVersion: res.Version, Changed: res.Changed})
}

func (s *Server) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if !decodeBody(w, r, "join request", &req) {
		return
	}
	if len(req.Addresses) == 0 {
		writeError(w, http.StatusBadRequest, errors.New("join request: no addresses"))
		return
	}
	for _, a := range req.Addresses {
		if _, _, err := net.SplitHostPort(a); err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("join address %q: want HOST:GOSSIPPORT: %w", a, err))
			return
		}
	}
	timeout := requestTimeout
	if req.TimeoutMS < 0 || req.TimeoutMS > maxJoinTimeout.Milliseconds() {
		writeError(w, http.StatusBadRequest, fmt.Errorf("join request: timeout_ms %d out of range 0..%d", req.TimeoutMS, maxJoinTimeout.Milliseconds()))
		return
	}
	if req.TimeoutMS > 0 {
		timeout = time.Duration(req.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	n, err := s.agent.Join(ctx, req.Addresses)
	if err != nil {
		writeError(w, http.StatusBadGateway, err)
		return
	}
	writeJSON(w, http.StatusOK, JoinResponse{Contacted: n})
}

func (s *Server) leave(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := s.agent.Leave(ctx); err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
	if s.left != nil {
		go s.left()
	}
}

func statusFor(err error) int {
	var ve *fsm.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest
	case errors.Is(err, cluster.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, cluster.ErrNoDC):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	resp := ErrorResponse{Error: err.Error()}
	var ve *fsm.ValidationError
	if errors.As(err, &ve) {
		resp.Problems = ve.Problems
		resp.Error = "the services file was rejected; nothing was changed"
	}
	writeJSON(w, code, resp)
}
