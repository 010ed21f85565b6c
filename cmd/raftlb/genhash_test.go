package main

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGenhash(t *testing.T) {
	const body = "<html>squid is up</html>\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/index.html" {
			http.NotFound(w, r)
			return
		}
		if r.Host == "proxy.example.com" {
			w.Write([]byte("virtual host page"))
			return
		}
		w.Write([]byte(body))
	}))
	defer srv.Close()
	digests := func(s string) string {
		m, h := md5.Sum([]byte(s)), sha256.Sum256([]byte(s))
		return "MD5SUM = " + hex.EncodeToString(m[:]) + "\nSHA256SUM = " + hex.EncodeToString(h[:]) + "\n"
	}

	stdout, _ := wantExit(t, 0, []string{"genhash", srv.URL + "/index.html"})
	if want := "HTTP status = 200\n" + digests(body); stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", stdout, want)
	}

	stdout, _ = wantExit(t, 0, []string{"genhash", "--server-name", "proxy.example.com", srv.URL + "/index.html"})
	if !strings.Contains(stdout, digests("virtual host page")) {
		t.Errorf("--server-name did not set the Host header:\n%s", stdout)
	}

	stdout, _ = wantExit(t, 0, []string{"genhash", srv.URL + "/missing"}, "warning: status 404")
	if !strings.HasPrefix(stdout, "HTTP status = 404\nMD5SUM = ") {
		t.Errorf("missing page:\n%s", stdout)
	}

	wantExit(t, 2, []string{"genhash"}, "one URL")
	wantExit(t, 2, []string{"genhash", srv.URL, srv.URL}, "one URL")
	wantExit(t, 2, []string{"genhash", "ftp://10.0.0.1/index.html"}, "bad URL", "http or https")
	wantExit(t, 2, []string{"genhash", "10.0.0.1/index.html"}, "bad URL")
	wantExit(t, 2, []string{"genhash", "--bogus", srv.URL}, "bogus")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String() + "/"
	l.Close()
	wantExit(t, 1, []string{"genhash", closed}, "connect: connection refused")
}
