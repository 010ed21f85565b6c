// Package webui is the live status page on the agent's --http listener:
// what raftlb status shows (DC and term, quorum, nodes, VIPs and who
// holds them, services with their real servers, weights, health and the
// kernel's counters) and the recent events, server-rendered, refreshed in
// place every two seconds by a small script. Read-only; nothing on it is
// a secret.
package webui

import (
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/events"
	"github.com/raftlb/raftlb/status"
)

// Sources are what the page shows; IPVS is nil on a node without a data
// plane.
type Sources struct {
	Status func() status.Status
	Events func() []events.Event
	IPVS   func() ([]dataplane.Service, error)
}

//go:embed page.html
var pageHTML string

//go:embed page.js
var pageJS []byte

//go:embed page.css
var pageCSS []byte

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return ""
		}
		return time.Since(*t).Round(time.Second).String()
	},
	"since": func(t time.Time) string { return time.Since(t).Round(time.Second).String() },
	"clock": func(t time.Time) string { return t.UTC().Format("15:04:05") },
}).Parse(pageHTML))

// Counters are the kernel's for one real server of one service.
type Counters struct {
	Conns, InPkts, InBytes uint64
	Active                 int
	Known                  bool
}

// view is what the template renders.
type view struct {
	Status   status.Status
	Events   []events.Event // newest first
	Counters map[string]Counters
	IPVSErr  string
	HasIPVS  bool
}

// RecentEvents is how many events the page lists.
const RecentEvents = 25

func (s Sources) view() view {
	v := view{Status: s.Status(), Counters: map[string]Counters{}}
	if s.Events != nil {
		evs := s.Events()
		if len(evs) > RecentEvents {
			evs = evs[len(evs)-RecentEvents:]
		}
		slices.Reverse(evs)
		v.Events = evs
	}
	if s.IPVS != nil {
		v.HasIPVS = true
		table, err := s.IPVS()
		if err != nil {
			v.IPVSErr = err.Error()
		}
		for _, svc := range table {
			for _, d := range svc.Dests {
				v.Counters[fmt.Sprintf("%s:%d %s:%d", svc.Key.VIP, svc.Key.Port, d.Addr, d.Port)] = Counters{
					Conns: d.Stats.Connections, InPkts: d.Stats.PacketsIn, InBytes: d.Stats.BytesIn, Active: d.ActiveConns, Known: true,
				}
			}
		}
	}
	return v
}

// Handler serves the page at /, its main part alone at /?part=main (what
// the script fetches), and its script and style.
func Handler(s Sources) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		headers(w, "text/html; charset=utf-8")
		name := "page"
		if r.URL.Query().Get("part") == "main" {
			name = "main"
		}
		if err := page.ExecuteTemplate(w, name, s.view()); err != nil {
			http.Error(w, "rendering the page failed", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("GET /page.js", func(w http.ResponseWriter, _ *http.Request) {
		headers(w, "text/javascript; charset=utf-8")
		_, _ = w.Write(pageJS)
	})
	mux.HandleFunc("GET /page.css", func(w http.ResponseWriter, _ *http.Request) {
		headers(w, "text/css; charset=utf-8")
		_, _ = w.Write(pageCSS)
	})
	return mux
}

func headers(w http.ResponseWriter, ctype string) {
	h := w.Header()
	h.Set("Content-Type", ctype)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'")
}
