package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/dataplane"
)

type fakeDataplane struct {
	table  []dataplane.Service
	writes uint64
}

func (f *fakeDataplane) Table() ([]dataplane.Service, error) { return f.table, nil }
func (f *fakeDataplane) Writes() uint64                      { return f.writes }
func (f *fakeDataplane) Reconciles() uint64                  { return 2 * f.writes }

func TestIPVSWithoutDataplaneSaysSo(t *testing.T) {
	ts := startServer(t, &FakeAgent{})
	_, err := ts.client.IPVS(context.Background())
	e := apiError(t, err, 404)
	if !strings.Contains(e.Message, "--dataplane none") {
		t.Fatalf("message %q does not explain why there is no table", e.Message)
	}
}

func TestIPVSTableThroughClientAndRendering(t *testing.T) {
	ts := startServer(t, &FakeAgent{})
	vip := netip.MustParseAddr("172.95.69.100")
	ts.srv.SetDataplane(&fakeDataplane{writes: 4, table: []dataplane.Service{{
		Key: dataplane.ServiceKey{VIP: vip, Port: 3128, Protocol: "tcp"}, Scheduler: "rr", Persistence: 20 * time.Second,
		Dests: []dataplane.Dest{
			{Addr: netip.MustParseAddr("172.95.69.30"), Port: 3128, Weight: 1, Forward: "local", ActiveConns: 2},
			{Addr: netip.MustParseAddr("172.95.69.40"), Port: 3128, Weight: 1, Forward: "route", InactiveConns: 7},
		},
	}}})
	r, err := ts.client.IPVS(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.WritesTotal != 4 || r.ReconcilesTotal != 8 || len(r.Services) != 1 || len(r.Services[0].RealServers) != 2 {
		t.Fatalf("IPVS response %+v", r)
	}
	var b bytes.Buffer
	if err := RenderIPVS(&b, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"TCP  172.95.69.100:3128 rr persistent 20",
		"-> 172.95.69.30:3128",
		"Local",
		"-> 172.95.69.40:3128",
		"Route",
		"4 IPVS writes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered table lacks %q:\n%s", want, out)
		}
	}
	// The JSON contract: snake_case keys, the persistence in seconds.
	body, code := ts.get(t, "/v1/ipvs")
	var compact bytes.Buffer
	if err := json.Compact(&compact, []byte(body)); err != nil {
		t.Fatal(err)
	}
	raw := compact.String()
	for _, want := range []string{`"writes_total":4`, `"reconciles_total":8`, `"persistence_s":20`, `"real_servers":[`, `"forward":"local"`, `"active_conns":2`, `"inactive_conns":7`, `"protocol":"tcp"`} {
		if code != 200 || !strings.Contains(raw, want) {
			t.Errorf("GET /v1/ipvs (%d) lacks %s:\n%s", code, want, raw)
		}
	}
	for _, internal := range []string{`"Dests"`, `"Key"`, `"Persistence"`} {
		if strings.Contains(raw, internal) {
			t.Errorf("GET /v1/ipvs shows the internal field %s:\n%s", internal, raw)
		}
	}
	var empty bytes.Buffer
	_ = RenderIPVS(&empty, IPVSResponse{Node: "m40"})
	if !strings.Contains(empty.String(), "only the DC") {
		t.Errorf("an empty table should explain itself:\n%s", empty.String())
	}
}
