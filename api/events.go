package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/raftlb/raftlb/events"
)

// SetEvents makes GET /v1/events answer from bus.
func (s *Server) SetEvents(bus *events.Bus) { s.events = bus }

// followBuffer is how many events a follower may fall behind before it
// loses some (it is told how many at the end).
const followBuffer = 256

// eventsList serves GET /v1/events: the recent events, oldest first, as a
// JSON array; with follow=1 they are followed by every new one, one JSON
// object per line, until the client goes or the agent stops.
func (s *Server) eventsList(w http.ResponseWriter, r *http.Request) {
	follow := false
	switch v := r.URL.Query().Get("follow"); v {
	case "", "0", "false":
	case "1", "true":
		follow = true
	default:
		writeError(w, http.StatusBadRequest, fmt.Errorf("follow=%q: want 1 or 0", v))
		return
	}
	if !follow {
		recent := s.events.Recent()
		if recent == nil {
			recent = []events.Event{}
		}
		writeJSON(w, http.StatusOK, recent)
		return
	}
	sub, recent := s.events.Subscribe(followBuffer)
	defer sub.Close()
	flusher, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	for _, e := range recent {
		_ = enc.Encode(e)
	}
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			return
		case e := <-sub.C():
			if enc.Encode(e) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
	}
}

// Events returns the agent's recent events.
func (c *Client) Events(ctx context.Context) ([]events.Event, error) {
	var out []events.Event
	err := c.do(ctx, http.MethodGet, "/v1/events", "", nil, &out)
	return out, err
}

// FollowEvents calls fn with the recent events and then each new one as it
// happens, until ctx ends (nil error) or the agent goes away.
func (c *Client) FollowEvents(ctx context.Context, fn func(events.Event) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v1/events?follow=1", nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the agent at %s (is `raftlb agent` running, and is --api the same?): %w", c.addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &Error{Code: resp.StatusCode, Message: fmt.Sprintf("agent answered %s", resp.Status)}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e events.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("an event from the agent: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("following events: %w", err)
	}
	if ctx.Err() == nil {
		return errors.New("the agent closed the event stream (it is stopping)")
	}
	return nil
}
