package api

// raftlb dc move: the handler, and its wait for the move to be visible
// from the node asked.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	rspec "github.com/raftlb/raftlb/spec"
)

func (s *Server) moveDC(w http.ResponseWriter, r *http.Request) {
	var req NodeRequest
	check := func() error {
		if req.Force {
			return errors.New("move request: force is for node removal")
		}
		if req.Node == "" {
			return nil
		}
		return rspec.ValidateNodeName(req.Node)
	}
	s.act(w, r, "move request", &req, check, func(ctx context.Context) (any, error) {
		dc, err := s.agent.MoveDC(ctx, req.Node)
		if err != nil {
			return nil, err
		}
		return MoveResponse{DC: dc, Pending: s.settled(ctx, dc)}, nil
	})
}

// defaultSettle bounds the wait of a DC move for its successor: the
// hand-over lets it claim at once, so this is seconds of slack for a
// slow machine, within requestTimeout.
const defaultSettle = 5 * time.Second

// settled waits until this node knows dc as the DC and dc holds every VIP
// of the spec, so that a status read once `raftlb dc move` returned shows
// the move done, not "VIP held by nobody" mid-hand-over: a planned move
// must not page anyone. It returns what is still pending when the wait
// ends first ("" once settled).
func (s *Server) settled(ctx context.Context, dc string) string {
	ctx, cancel := context.WithTimeout(ctx, s.settle)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := s.pendingMove(dc)
		if pending == "" {
			return ""
		}
		select {
		case <-ctx.Done():
			return pending
		case <-tick.C:
		}
	}
}

// pendingMove is what keeps a move to dc from being complete as this
// node sees it, "" when nothing does.
func (s *Server) pendingMove(dc string) string {
	if known := s.agent.Leader(); known != dc {
		if known == "" {
			known = "none"
		}
		return fmt.Sprintf("this node does not know %s as the DC yet (it knows: %s)", dc, known)
	}
	st := s.agent.State()
	var waiting []string
	for _, v := range st.Spec.VIPs {
		if h, ok := st.Holders[v.Address]; !ok || h.Node != dc || h.Released {
			waiting = append(waiting, v.Address.String())
		}
	}
	if len(waiting) > 0 {
		return fmt.Sprintf("%s does not hold VIP(s) %s yet", dc, strings.Join(waiting, ", "))
	}
	return ""
}
