package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/raftlb/raftlb/spec"
	"github.com/raftlb/raftlb/status"
)

// Client talks to an agent's admin API.
type Client struct {
	addr Addr
	http *http.Client
	base string
}

// NewClient returns a client for an --api address.
func NewClient(addr string) (*Client, error) {
	a, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{}
	base := "http://" + a.TCP.String()
	if a.Unix != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", a.Unix)
		}
		base = "http://raftlb"
	}
	// Requests are bounded by their contexts; a join may be asked to
	// retry for minutes.
	return &Client{addr: a, http: &http.Client{Transport: tr}, base: base}, nil
}

// Error is a non-2xx answer from the agent.
type Error struct {
	Code     int
	Message  string
	Problems []spec.Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return e.Message
	}
	var b strings.Builder
	b.WriteString(e.Message)
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s: %s", p.Path, p.Message)
	}
	return b.String()
}

func (c *Client) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the agent at %s (is `raftlb agent` running, and is --api the same?): %w", c.addr, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("read answer from %s: %w", c.addr, err)
	}
	if resp.StatusCode/100 != 2 {
		var er ErrorResponse
		if json.Unmarshal(data, &er) != nil || er.Error == "" {
			er.Error = fmt.Sprintf("agent answered %s", resp.Status)
		}
		return &Error{Code: resp.StatusCode, Message: er.Error, Problems: er.Problems}
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("decode answer from %s: %w", c.addr, err)
		}
	}
	return nil
}

// Status fetches the status view.
func (c *Client) Status(ctx context.Context) (status.Status, error) {
	var st status.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", "", nil, &st)
	return st, err
}

// Apply submits a services file.
func (c *Client) Apply(ctx context.Context, servicesYAML []byte, o ApplyOptions) (ApplyResponse, error) {
	q := url.Values{}
	if o.ExpectVersion != 0 {
		q.Set("expect_version", strconv.FormatUint(o.ExpectVersion, 10))
	}
	if o.DryRun {
		q.Set("dry_run", "true")
	}
	if o.AllowEmpty {
		q.Set("allow_empty", "true")
	}
	path := "/v1/apply"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var r ApplyResponse
	err := c.do(ctx, http.MethodPost, path, "application/yaml", servicesYAML, &r)
	return r, err
}

// Spec fetches the applied spec as a services file.
func (c *Client) Spec(ctx context.Context) ([]byte, error) {
	var raw []byte
	err := c.do(ctx, http.MethodGet, "/v1/spec", "", nil, &raw)
	return raw, err
}

// Join asks the agent to join the given gossip addresses, retrying for as
// long as ctx allows (less a margin for the answer to come back).
func (c *Client) Join(ctx context.Context, addrs []string) (JoinResponse, error) {
	req := JoinRequest{Addresses: addrs}
	if dl, ok := ctx.Deadline(); ok {
		req.TimeoutMS = max(time.Until(dl)-time.Second, 100*time.Millisecond).Milliseconds()
	}
	body, _ := json.Marshal(req)
	var r JoinResponse
	err := c.do(ctx, http.MethodPost, "/v1/join", "application/json", body, &r)
	return r, err
}

// RemoveNode asks the DC to remove a node that is gone for good.
func (c *Client) RemoveNode(ctx context.Context, node string, force bool) error {
	body, _ := json.Marshal(NodeRequest{Node: node, Force: force})
	return c.do(ctx, http.MethodPost, "/v1/node/remove", "application/json", body, nil)
}

// MoveDC asks the DC to hand its role to node (any that can direct when
// ""), and returns the new DC, with what had not settled yet when the
// agent answered (MoveResponse.Pending).
func (c *Client) MoveDC(ctx context.Context, node string) (MoveResponse, error) {
	body, _ := json.Marshal(NodeRequest{Node: node})
	var r MoveResponse
	err := c.do(ctx, http.MethodPost, "/v1/dc/move", "application/json", body, &r)
	return r, err
}

// SetStandby puts a node in standby or takes it out.
func (c *Client) SetStandby(ctx context.Context, node string, standby bool) error {
	body, _ := json.Marshal(StandbyRequest{Node: node, Standby: standby})
	return c.do(ctx, http.MethodPost, "/v1/node/standby", "application/json", body, nil)
}

// SetServer disables a real server or enables it; it answers which one.
func (c *Client) SetServer(ctx context.Context, service, server string, disabled bool) (string, error) {
	body, _ := json.Marshal(ServerRequest{Service: service, Server: server, Disabled: disabled})
	var r ServerResponse
	err := c.do(ctx, http.MethodPost, "/v1/server", "application/json", body, &r)
	return r.Server, err
}

// Leave asks the agent to leave the cluster and stop.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", "", nil, nil)
}

// IPVS fetches the node's kernel IPVS table for its VIPs.
func (c *Client) IPVS(ctx context.Context) (IPVSResponse, error) {
	var r IPVSResponse
	err := c.do(ctx, http.MethodGet, "/v1/ipvs", "", nil, &r)
	return r, err
}
