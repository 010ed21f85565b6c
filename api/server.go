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
	"sync"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/fsm"
	rspec "github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// Agent is what the API needs from the running node.
type Agent interface {
	Name() string
	// Leader is the DC this node knows, "" when there is none.
	Leader() string
	Status() status.Status
	// Spec is this node's copy of the applied spec; WaitForSpec waits
	// until this node has applied spec version v.
	Spec() rspec.Spec
	// State is this node's copy of the replicated state.
	State() fsm.State
	WaitForSpec(ctx context.Context, v uint64) error
	ApplySpec(ctx context.Context, spec rspec.Spec, expectVersion uint64) (cluster.ApplyResult, error)
	Join(ctx context.Context, addrs []string) (int, error)
	Leave(ctx context.Context) error
	// RemoveNode removes a node that is gone for good; MoveDC hands the
	// DC role to a node (any that can direct when "") and names it.
	RemoveNode(ctx context.Context, name string, force bool) error
	MoveDC(ctx context.Context, to string) (string, error)
	// SetStandby and SetServerDisabled are maintenance (fsm/maintenance.go).
	SetStandby(ctx context.Context, node string, standby bool) error
	SetServerDisabled(ctx context.Context, ref fsm.ServerRef, disabled bool) error
}

// StandbyRequest is the body of POST /v1/node/standby.
type StandbyRequest struct {
	Node    string `json:"node"`
	Standby bool   `json:"standby"`
}

// ServerRequest is the body of POST /v1/server: the service by name or
// VIP:PORT[/PROTOCOL], the real server by ADDR or ADDR:PORT.
type ServerRequest struct {
	Service  string `json:"service"`
	Server   string `json:"server"`
	Disabled bool   `json:"disabled"`
}

// ServerResponse names the real server a ServerRequest resolved to.
type ServerResponse struct {
	Server string `json:"server"`
}

// NodeRequest is the body of POST /v1/node/remove and POST /v1/dc/move.
type NodeRequest struct {
	Node  string `json:"node"`
	Force bool   `json:"force,omitempty"`
}

// MoveResponse answers POST /v1/dc/move.
type MoveResponse struct {
	DC string `json:"dc"`
	// Pending says what had not settled when the answer was given: this
	// node did not yet know DC as the DC, or DC did not yet hold every
	// VIP (empty when the move is complete as seen from here).
	Pending string `json:"pending,omitempty"`
}

// maxBody bounds every request body.
const maxBody = 1 << 20

// requestTimeout bounds apply, join and leave.
const requestTimeout = 15 * time.Second

// maxJoinTimeout caps what a join request may ask for.
const maxJoinTimeout = 10 * time.Minute

// ApplyResponse answers POST /v1/apply.
type ApplyResponse struct {
	// SpecVersion is the version now in force; for a dry run, the one the
	// file was compared with.
	SpecVersion uint64 `json:"spec_version"`
	Changed     bool   `json:"changed"`
	DryRun      bool   `json:"dry_run,omitempty"`
	// Changes is what the apply changed (or, for a dry run, would).
	Changes []rspec.Change `json:"changes"`
	// CatchingUp: this node had not applied SpecVersion yet when the
	// answer was sent, so its status may show an older one for a moment.
	CatchingUp bool `json:"catching_up,omitempty"`
}

// ApplyOptions are the query parameters of POST /v1/apply.
type ApplyOptions struct {
	ExpectVersion uint64 // apply only if the spec still has this version
	DryRun        bool   // compare, change nothing
	AllowEmpty    bool   // a file without services or VIPs may remove them all
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
	Error    string          `json:"error"`
	Problems []rspec.Problem `json:"problems,omitempty"`
}

// Server serves the admin API.
type Server struct {
	agent     Agent
	dataplane Dataplane
	fencing   Fencing
	left      func()
	logger    *slog.Logger
	http      *http.Server
	dcWait    time.Duration
	settle    time.Duration // how long a DC move waits for the new DC to hold the VIPs
	events    *events.Bus
	stopping  chan struct{} // closed by Shutdown: event streams end
	stopOnce  sync.Once
}

// NewServer builds the API. left is called after a successful leave so the
// agent can shut down.
func NewServer(agent Agent, left func(), logger *slog.Logger) *Server {
	s := &Server{agent: agent, left: left, logger: logger.With("component", "api"), dcWait: defaultDCWait, settle: defaultSettle, stopping: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("POST /v1/apply", s.apply)
	mux.HandleFunc("GET /v1/spec", s.spec)
	mux.HandleFunc("POST /v1/node/remove", s.removeNode)
	mux.HandleFunc("POST /v1/dc/move", s.moveDC)
	mux.HandleFunc("POST /v1/node/standby", s.standby)
	mux.HandleFunc("POST /v1/server", s.server)
	mux.HandleFunc("POST /v1/join", s.join)
	mux.HandleFunc("POST /v1/leave", s.leave)
	mux.HandleFunc("GET /v1/ipvs", s.ipvs)
	mux.HandleFunc("GET /v1/events", s.eventsList)
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

// Shutdown stops accepting requests, ends the event streams, and waits
// for the requests in flight.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { close(s.stopping) })
	return s.http.Shutdown(ctx)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.agent.Status())
}

func (s *Server) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("services file too large or unreadable (limit %d bytes): %w", maxBody, err))
		return
	}
	opts, err := applyOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	spec, err := rspec.ParseServices(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if !opts.DryRun {
		if err := s.awaitDC(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, err)
			return
		}
	}
	// The changes are computed against the spec this node holds, and the
	// apply is made conditional on that version, so what is printed is
	// what changed; a node that was behind catches up and compares again.
	for attempt := 1; ; attempt++ {
		cur := s.agent.Spec()
		changes := rspec.Diff(cur, spec)
		if len(spec.VIPs) == 0 && len(spec.Services) == 0 && (len(cur.VIPs) > 0 || len(cur.Services) > 0) && !opts.AllowEmpty {
			writeError(w, http.StatusBadRequest, fmt.Errorf("the services file defines no VIP and no service: applying it would remove all %d service(s) and %d VIP(s); nothing was changed (to mean it: raftlb apply --allow-empty, or raftlb spec clear)", len(cur.Services), len(cur.VIPs)))
			return
		}
		if opts.DryRun {
			writeJSON(w, http.StatusOK, ApplyResponse{SpecVersion: cur.Version, Changed: len(changes) > 0, DryRun: true, Changes: orNone(changes)})
			return
		}
		expect := opts.ExpectVersion
		if expect == 0 {
			expect = cur.Version
		}
		res, err := s.agent.ApplySpec(ctx, spec, expect)
		if errors.Is(err, cluster.ErrConflict) && opts.ExpectVersion == 0 && attempt < 3 {
			// This node was behind the DC: catch up, then compare again.
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_ = s.agent.WaitForSpec(wctx, cur.Version+1)
			wcancel()
			continue
		}
		if err != nil {
			writeError(w, statusFor(err), err)
			return
		}
		if !res.Changed {
			changes = nil
		}
		// Read your writes: this node's status shows the version once
		// this answer arrives, or the answer says it does not yet.
		wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
		catchingUp := s.agent.WaitForSpec(wctx, res.Version) != nil
		wcancel()
		if res.Changed {
			s.logger.Info("services applied", "spec_version", res.Version, "changes", len(changes))
		}
		writeJSON(w, http.StatusOK, ApplyResponse{SpecVersion: res.Version, Changed: res.Changed, Changes: orNone(changes), CatchingUp: catchingUp})
		return
	}
}

func orNone(c []rspec.Change) []rspec.Change {
	if c == nil {
		return []rspec.Change{}
	}
	return c
}

func applyOptions(r *http.Request) (ApplyOptions, error) {
	q := r.URL.Query()
	var o ApplyOptions
	var err error
	if v := q.Get("expect_version"); v != "" {
		if o.ExpectVersion, err = strconv.ParseUint(v, 10, 64); err != nil {
			return o, fmt.Errorf("expect_version %q is not a number", v)
		}
	}
	for name, dst := range map[string]*bool{"dry_run": &o.DryRun, "allow_empty": &o.AllowEmpty} {
		if v := q.Get(name); v != "" {
			if *dst, err = strconv.ParseBool(v); err != nil {
				return o, fmt.Errorf("%s %q is not true or false", name, v)
			}
		}
	}
	return o, nil
}

// defaultDCWait is how long apply and leave wait for an election in
// progress before they say there is no DC.
const defaultDCWait = 3 * time.Second

// awaitDC returns once this node knows a DC, or, after dcWait, an error
// that says why there is none; a change needs the DC.
func (s *Server) awaitDC(ctx context.Context) error {
	deadline := time.Now().Add(s.dcWait)
	for {
		if s.agent.Leader() != "" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			why := s.agent.Status().Warning
			if why == "" {
				why = "no DC is elected"
			}
			return fmt.Errorf("%w: %s; nothing was changed", cluster.ErrNoDC, why)
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// spec answers GET /v1/spec: the applied spec as a services file.
func (s *Server) spec(w http.ResponseWriter, r *http.Request) {
	out, err := rspec.FormatServices(s.agent.Spec())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(out)
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
	if err := s.awaitDC(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, fmt.Errorf("cannot leave: %w", err))
		return
	}
	if err := s.agent.Leave(ctx); err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
	if s.left != nil {
		go s.left()
	}
}

// act serves an operator's change of the cluster: the request decoded
// into req and checked (check), then, once a DC is known, do; its answer
// is the response.
func (s *Server) act(w http.ResponseWriter, r *http.Request, what string, req any, check func() error, do func(context.Context) (any, error)) {
	if !decodeBody(w, r, what, req) {
		return
	}
	if err := check(); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if err := s.awaitDC(ctx); err != nil {
		writeError(w, http.StatusServiceUnavailable, err)
		return
	}
	out, err := do(ctx)
	if err != nil {
		writeError(w, statusFor(err), err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	var req NodeRequest
	s.act(w, r, "node request", &req, func() error { return rspec.ValidateNodeName(req.Node) }, func(ctx context.Context) (any, error) {
		if err := s.agent.RemoveNode(ctx, req.Node, req.Force); err != nil {
			return nil, err
		}
		s.logger.Warn("node removed", "node", req.Node, "forced", req.Force)
		return struct{}{}, nil
	})
}

func (s *Server) standby(w http.ResponseWriter, r *http.Request) {
	var req StandbyRequest
	s.act(w, r, "standby request", &req, func() error { return rspec.ValidateNodeName(req.Node) }, func(ctx context.Context) (any, error) {
		return struct{}{}, s.agent.SetStandby(ctx, req.Node, req.Standby)
	})
}

func (s *Server) server(w http.ResponseWriter, r *http.Request) {
	var req ServerRequest
	var ref fsm.ServerRef
	check := func() (err error) {
		ref, err = s.agent.State().ResolveServer(req.Service, req.Server)
		return err
	}
	s.act(w, r, "server request", &req, check, func(ctx context.Context) (any, error) {
		return ServerResponse{Server: ref.String()}, s.agent.SetServerDisabled(ctx, ref, req.Disabled)
	})
}

func statusFor(err error) int {
	var ve *rspec.ValidationError
	switch {
	case errors.As(err, &ve):
		return http.StatusBadRequest
	case errors.Is(err, cluster.ErrRefused):
		return http.StatusConflict
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
	var ve *rspec.ValidationError
	if errors.As(err, &ve) {
		resp.Problems = ve.Problems
		resp.Error = "the services file was rejected; nothing was changed"
	}
	writeJSON(w, code, resp)
}
