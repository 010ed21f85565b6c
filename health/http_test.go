package health

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/raftlb/raftlb/internal/testkit"
	"github.com/raftlb/raftlb/spec"
)

const page = "<html><body>raftlb ok</body></html>\n"

func target(t *testing.T, srv *httptest.Server) Target {
	t.Helper()
	return Target{
		Addr: netip.MustParseAddrPort(srv.Listener.Addr().String()),
		VIP:  netip.MustParseAddrPort("172.95.69.100:80"),
	}
}

func httpCheck(mod func(*spec.HealthCheck)) spec.HealthCheck {
	hc := spec.HealthCheck{Type: spec.CheckHTTP, Path: "/health", ExpectStatus: []int{200}}
	if mod != nil {
		mod(&hc)
	}
	return hc
}

func wantErr(t *testing.T, name string, err error, fragment string) {
	t.Helper()
	switch {
	case fragment == "" && err != nil:
		t.Errorf("%s: %v, want healthy", name, err)
	case fragment != "" && err == nil:
		t.Errorf("%s: healthy, want an error containing %q", name, fragment)
	case fragment != "" && !strings.Contains(err.Error(), fragment):
		t.Errorf("%s: error %q lacks %q", name, err, fragment)
	}
}

func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	var paths, hosts, agents, conns atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths.Store(r.URL.RequestURI())
		hosts.Store(r.Host)
		agents.Store(r.Header.Get("User-Agent"))
		conns.Store(r.Header.Get("Connection") + "|" + r.Header.Get("Accept-Encoding"))
		w.WriteHeader(int(status.Load()))
		w.Write([]byte(page))
	}))
	defer srv.Close()
	tg := target(t, srv)
	md5sum := md5.Sum([]byte(page))
	shasum := sha256.Sum256([]byte(page))
	md5hex, shahex := hex.EncodeToString(md5sum[:]), hex.EncodeToString(shasum[:])

	for _, tc := range []struct {
		name   string
		status int
		hc     spec.HealthCheck
		want   string // error fragment; empty: healthy
	}{
		{"200", 200, httpCheck(nil), ""},
		{"503", 503, httpCheck(nil), "status 503, want 200"},
		{"default expect", 200, httpCheck(func(hc *spec.HealthCheck) { hc.ExpectStatus = nil }), ""},
		{"status set", 204, httpCheck(func(hc *spec.HealthCheck) { hc.ExpectStatus = []int{200, 204} }), ""},
		{"status set miss", 404, httpCheck(func(hc *spec.HealthCheck) { hc.ExpectStatus = []int{200, 204} }), "status 404, want 200 or 204"},
		{"regex", 200, httpCheck(func(hc *spec.HealthCheck) { hc.BodyRegex = `raftlb\s+ok` }), ""},
		{"regex miss", 200, httpCheck(func(hc *spec.HealthCheck) { hc.BodyRegex = "^ok$" }), "body does not match /^ok$/"},
		{"status before body", 500, httpCheck(func(hc *spec.HealthCheck) { hc.BodyRegex = "^ok$" }), "status 500, want 200"},
		{"md5", 200, httpCheck(func(hc *spec.HealthCheck) { hc.DigestMD5 = md5hex }), ""},
		{"md5 upper case", 200, httpCheck(func(hc *spec.HealthCheck) { hc.DigestMD5 = strings.ToUpper(md5hex) }), ""},
		{"md5 miss", 200, httpCheck(func(hc *spec.HealthCheck) { hc.DigestMD5 = strings.Repeat("0", 32) }),
			"MD5 digest mismatch: got " + md5hex + " want " + strings.Repeat("0", 32)},
		{"sha256", 200, httpCheck(func(hc *spec.HealthCheck) { hc.DigestSHA256 = shahex }), ""},
		{"sha256 miss", 200, httpCheck(func(hc *spec.HealthCheck) { hc.DigestSHA256 = strings.Repeat("a", 64) }),
			"SHA-256 digest mismatch: got " + shahex + " want " + strings.Repeat("a", 64)},
	} {
		status.Store(int32(tc.status))
		wantErr(t, tc.name, check(t, tc.hc, tg), tc.want)
	}

	if got := paths.Load(); got != "/health" {
		t.Errorf("request URI %q, want /health", got)
	}
	if got, want := hosts.Load(), tg.Addr.String(); got != want {
		t.Errorf("Host %q, want the real server's address %q", got, want)
	}
	if got := agents.Load(); got != userAgent {
		t.Errorf("User-Agent %q, want %q", got, userAgent)
	}
	// No keep-alive (a fresh connection per probe) and no compression
	// (the digest is of the body as served).
	if got := conns.Load(); got != "close|" {
		t.Errorf("Connection|Accept-Encoding = %q, want %q", got, "close|")
	}

	status.Store(200)
	err := check(t, httpCheck(func(hc *spec.HealthCheck) { hc.ServerName = "www.example.com" }), tg)
	wantErr(t, "server name", err, "")
	if got := hosts.Load(); got != "www.example.com" {
		t.Errorf("Host %q with server_name set, want www.example.com", got)
	}
}

func TestHTTPCheckFreshConnectionPerProbe(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := NewChecker(httpCheck(nil), testkit.DialContext(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		err := c.Check(ctx, target(t, srv))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := conns.Load(); got != 3 {
		t.Errorf("3 probes opened %d connections, want 3", got)
	}
}

func TestHTTPCheckNoRedirect(t *testing.T) {
	var followed atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, r *http.Request) {
		followed.Store(true)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	wantErr(t, "redirect", check(t, httpCheck(nil), target(t, srv)), "status 302, want 200")
	wantErr(t, "redirect expected", check(t, httpCheck(func(hc *spec.HealthCheck) { hc.ExpectStatus = []int{302} }), target(t, srv)), "")
	if followed.Load() {
		t.Error("the redirect was followed")
	}
}

func TestHTTPCheckBodyBound(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("x", MaxBody+1)))
	}))
	defer srv.Close()
	hc := httpCheck(func(hc *spec.HealthCheck) { hc.BodyRegex = "x" })
	wantErr(t, "oversized body", check(t, hc, target(t, srv)), "body exceeds 1048576 bytes")
	// Without a body check the body is not read at all.
	wantErr(t, "oversized body, status only", check(t, httpCheck(nil), target(t, srv)), "")
}

func TestHTTPCheckRefused(t *testing.T) {
	err := check(t, httpCheck(nil), Target{Addr: closedPort(t)})
	wantErr(t, "refused", err, "connect: connection refused")
	if err != nil && err.Error() != "connect: connection refused" {
		t.Errorf("refused: %q carries more than what failed", err)
	}
}

func TestHTTPSCheck(t *testing.T) {
	sni := make(chan string, 10)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sni <- r.TLS.ServerName + "|" + r.Host
		w.Write([]byte(page))
	}))
	srv.StartTLS()
	defer srv.Close()
	tg := target(t, srv)
	https := func(mod func(*spec.HealthCheck)) spec.HealthCheck {
		return httpCheck(func(hc *spec.HealthCheck) {
			hc.Type = spec.CheckHTTPS
			if mod != nil {
				mod(hc)
			}
		})
	}
	next := func() string {
		select {
		case s := <-sni:
			return s
		default:
			return "(no request)"
		}
	}

	wantErr(t, "no verification", check(t, https(nil), tg), "")
	if got, want := next(), "|"+tg.Addr.String(); got != want {
		t.Errorf("SNI|Host = %q, want %q (no SNI for an IP address)", got, want)
	}

	err := check(t, https(func(hc *spec.HealthCheck) { hc.ServerName = "www.example.com" }), tg)
	wantErr(t, "server name", err, "")
	if got, want := next(), "www.example.com|www.example.com"; got != want {
		t.Errorf("SNI|Host = %q, want %q", got, want)
	}

	// httptest's certificate is signed by nobody we trust.
	wantErr(t, "verification", check(t, https(func(hc *spec.HealthCheck) { hc.VerifyTLS = true }), tg), "unknown authority")
	wantErr(t, "verification with server name",
		check(t, https(func(hc *spec.HealthCheck) { hc.VerifyTLS = true; hc.ServerName = "example.com" }), tg), "unknown authority")
	if got := next(); got != "(no request)" {
		t.Errorf("a request got through an unverified TLS connection: %q", got)
	}
}

func TestGenhash(t *testing.T) {
	var host atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host.Store(r.Host)
		if r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		// Chunked: Go's client de-chunks, which is what keepalived's
		// HTTP/1.0 request gets unchunked from the server.
		w.Write([]byte(page[:10]))
		w.(http.Flusher).Flush()
		w.Write([]byte(page[10:]))
	}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	status, m, s, err := Genhash(ctx, srv.URL+"/index.html", "www.example.com", false)
	if err != nil {
		t.Fatal(err)
	}
	wantM, wantS := Digest([]byte(page))
	md5sum := md5.Sum([]byte(page))
	if status != 200 || m != wantM || s != wantS || m != hex.EncodeToString(md5sum[:]) {
		t.Errorf("Genhash = %d %s %s, want 200 %s %s", status, m, s, wantM, wantS)
	}
	if got := host.Load(); got != "www.example.com" {
		t.Errorf("Host %q, want www.example.com", got)
	}

	status, _, _, err = Genhash(ctx, srv.URL+"/missing", "", false)
	if err != nil || status != 404 {
		t.Errorf("missing page: %d, %v; want 404 and digests", status, err)
	}

	for _, bad := range []string{"ftp://x/", "http:///path", "://", "10.0.0.1/index.html"} {
		if _, _, _, err := Genhash(ctx, bad, "", false); !errors.Is(err, ErrBadURL) {
			t.Errorf("Genhash(%q): %v, want ErrBadURL", bad, err)
		}
	}
	if _, _, _, err := Genhash(ctx, "http://"+closedPort(t).String()+"/", "", false); err == nil || errors.Is(err, ErrBadURL) {
		t.Errorf("closed port: %v, want a network error", err)
	}
}
