//go:build linux

package e2e

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/raftlb/raftlb/internal/testkit"
)

// httpFlags gives agents n1…nN of block an --http address each, on a free
// port of their own address.
func httpFlags(t *testing.T, block, n int) (extra map[string][]string, addrs map[string]string) {
	t.Helper()
	extra, addrs = map[string][]string{}, map[string]string{}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("n%d", i)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.%d:0", block, i))
		if err != nil {
			t.Fatal(err)
		}
		addrs[name] = ln.Addr().String()
		ln.Close()
		extra[name] = []string{"--http", addrs[name]}
	}
	return extra, addrs
}

// TestMetricsScrape scrapes /metrics of real agents (the fake data plane)
// on the DC and on a member: the exposition passes client_golang's lint,
// and the DC, the term, quorum, the nodes and the VIP are what status and
// the (fake) kernel say.
func TestMetricsScrape(t *testing.T) {
	t.Parallel()
	extra, ports := httpFlags(t, blockMetrics, 3)
	c := startClusterExtra(t, blockMetrics, 3, "fake", extra)
	applyAndWait(c, c.agents[0], writeFile(t, c.dir, "squid.yaml", squidServices), c.agents)
	dcName, err := c.agreed(c.agents, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DialContext: testkit.DialContext(t)}}
	scrape := func(node string) (string, map[string]float64) {
		resp, err := client.Get("http://" + ports[node] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		values := map[string]float64{}
		for _, line := range strings.Split(string(body), "\n") {
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			i := strings.LastIndexByte(line, ' ')
			v, err := strconv.ParseFloat(line[i+1:], 64)
			if err == nil {
				values[line[:i]] = v
			}
		}
		return string(body), values
	}
	member := c.others(c.byName(dcName))[0].name
	c.waitFor("the DC's metrics to show the VIP on its interface", changeTimeout, func() error {
		if _, v := scrape(dcName); v[`raftlb_vip_on_interface{interface="lo",vip="192.0.2.100"}`] != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	st := c.mustStatus(c.byName(dcName))
	for node, isDC := range map[string]bool{dcName: true, member: false} {
		body, v := scrape(node)
		problems, err := promlint.New(bytes.NewReader([]byte(body))).Lint()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: lint: %s: %s", node, p.Metric, p.Text)
		}
		want := map[string]float64{
			"raftlb_dc": map[bool]float64{true: 1, false: 0}[isDC], "raftlb_quorum": 1, "raftlb_raft_term": float64(st.Term),
			`raftlb_nodes{status="online"}`: 3, `raftlb_nodes{status="offline"}`: 0, "raftlb_spec_version": 1,
			`raftlb_vip_on_interface{interface="lo",vip="192.0.2.100"}`: map[bool]float64{true: 1, false: 0}[isDC],
			`raftlb_events_total{type="dc_gained"}`:                     map[bool]float64{true: 1, false: 0}[isDC],
		}
		for k, w := range want {
			if got, ok := v[k]; !ok || got != w {
				t.Errorf("%s: %s = %v (listed %v), want %v", node, k, got, ok, w)
			}
		}
		if _, ok := v["process_resident_memory_bytes"]; !ok {
			t.Errorf("%s: no process metrics", node)
		}
	}
	if r := c.run("agent", "--name", "x", "--bind", "127.0.0.1", "--data-dir", t.TempDir(), "--insecure", "--http", "192.0.2.1:9000"); r.code != 2 || !strings.Contains(r.stderr, "is not loopback: the status page and the metrics show the cluster's layout") {
		t.Errorf("--http on a public address: %s", r)
	}
}

// TestMetricsOverMutualTLS: with --http-mtls the listener, on a network
// address, speaks TLS with the node's certificate and serves only clients
// whose certificate the cluster CA signed (a Prometheus server's own, made
// with raftlb tls cert, as INSTALL says); plain HTTP, no certificate, or
// another CA's is refused.
func TestMetricsOverMutualTLS(t *testing.T) {
	t.Parallel()
	extra, addrs := httpFlags(t, blockMetricsTLS, 1)
	extra["n1"] = append(extra["n1"], "--http-mtls")
	c := startClusterExtra(t, blockMetricsTLS, 1, "fake", extra)
	if _, err := c.agreed(c.agents, 1, 1); err != nil {
		t.Fatal(err)
	}
	promDir := filepath.Join(t.TempDir(), "prometheus")
	c.mustRaftlb("tls", "cert", "--dir", c.tlsDir, "--name", "prometheus", "--ip", "127.0.0.1", "--out", promDir)
	otherCA := filepath.Join(t.TempDir(), "other-ca")
	c.mustRaftlb("tls", "init", "--dir", otherCA)
	strangerDir := filepath.Join(t.TempDir(), "stranger")
	c.mustRaftlb("tls", "cert", "--dir", otherCA, "--name", "prometheus", "--ip", "127.0.0.1", "--out", strangerDir)

	roots := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(c.tlsDir, "ca.pem"))
	if err != nil || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("the cluster CA: %v", err)
	}
	get := func(scheme, certDir string) (int, string, error) {
		conf := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS13}
		if certDir != "" {
			pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "prometheus.pem"), filepath.Join(certDir, "prometheus-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			conf.Certificates = []tls.Certificate{pair}
		}
		client := &http.Client{Timeout: cliTimeout, Transport: &http.Transport{DialContext: testkit.DialContext(t), TLSClientConfig: conf}}
		resp, err := client.Get(scheme + "://" + addrs["n1"] + "/metrics")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), nil
	}
	if code, body, err := get("https", promDir); err != nil || code != http.StatusOK || !strings.Contains(body, "raftlb_dc 1") {
		t.Errorf("Prometheus's certificate from the cluster CA: %d %v, body has raftlb_dc 1: %v", code, err, strings.Contains(body, "raftlb_dc 1"))
	}
	if code, _, err := get("https", ""); err == nil {
		t.Errorf("no client certificate: %d, want the handshake refused", code)
	}
	if code, _, err := get("https", strangerDir); err == nil {
		t.Errorf("another CA's certificate: %d, want the handshake refused", code)
	}
	if code, _, err := get("http", ""); err == nil && code == http.StatusOK {
		t.Errorf("plain HTTP to the TLS listener: %d, want no metrics", code)
	}
}
