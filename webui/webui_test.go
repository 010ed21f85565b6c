package webui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/resources"
	"github.com/raftlb/raftlb/status"
)

func testSources() Sources {
	since := time.Now().Add(-time.Minute)
	return Sources{
		Status: func() status.Status {
			return status.Status{Node: "n1", DC: "n1", Term: 3, Quorum: true, SpecVersion: 2, NodesConfigured: 1,
				Nodes:  []cluster.NodeView{{Name: "n1", Status: "online", Role: "DC"}},
				VIPs:   []status.VIPStatus{{Address: "172.95.69.100", Interface: "eth0", HeldBy: "n1"}},
				Health: status.Verdict{State: status.StateDegraded, Reasons: []string{"a real server is down"}},
				Services: []status.ServiceStatus{{VIP: "172.95.69.100", Port: 80, Protocol: "tcp", Scheduler: "rr", Forwarding: "route",
					RealServers: []status.RealServerStatus{{Address: "172.95.69.30", Port: 80, Weight: 1, Health: "down", Since: &since, LastError: `<script>alert("x")</script>`}}}},
				Resources: []resources.Status{{Name: "www-data", Kind: "ocf:heartbeat:Filesystem", State: resources.StateStarted, Since: since},
					{Name: "app", Kind: "/etc/raftlb/hooks/app", State: resources.StateFailed, Since: since, LastError: "<i>exit 1</i>"}},
			}
		},
		Events: func() []events.Event {
			return []events.Event{{Seq: 1, Type: events.ServerDown, Server: "172.95.69.30:80", Message: "real server down", Error: "<b>refused</b>"}}
		},
	}
}

// TestPage: the page and its main part render what status holds, escape
// what came from outside (a check's error, an event), and are sent with a
// policy that lets only the page's own script and style run.
func TestPage(t *testing.T) {
	srv := httptest.NewServer(Handler(testSources()))
	defer srv.Close()
	get := func(path string) (string, http.Header) {
		resp, err := srv.Client().Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", path, resp.Status)
		}
		return string(body), resp.Header
	}
	page, h := get("/")
	for _, want := range []string{`<main>`, `id="dc">n1<`, `tr data-server="172.95.69.30:80"`, `class="health bad">down`, `a real server is down`, `no data plane here`, `<script src="page.js">`, `real server down`,
		`<td>www-data</td><td class="dim">ocf:heartbeat:Filesystem</td><td class="ok">started`, `<td class="bad">failed`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>alert") || strings.Contains(page, "<b>refused") || strings.Contains(page, "<i>exit") {
		t.Error("text from outside reached the page unescaped")
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("policy %q", csp)
	}
	part, _ := get("/?part=main")
	if strings.Contains(part, "<html") || !strings.Contains(part, `id="dc">n1<`) {
		t.Errorf("the main part: %.200s", part)
	}
	if js, h := get("/page.js"); !strings.Contains(js, `fetch("?part=main"`) || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") {
		t.Errorf("the script: %s %.100s", h.Get("Content-Type"), js)
	}
	resp, err := srv.Client().Get(srv.URL + "/nonesuch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nonesuch: %s", resp.Status)
	}
}
