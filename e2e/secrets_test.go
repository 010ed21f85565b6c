package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/internal/testkit"
)

// TestSecretsNeverShown: a fence device's password, read from a node's
// --fence-secret-dir, reaches Debian's fence_dummy on its stdin (which
// echoes it back in a warning) and nothing an operator or a peer can read
// shows it: not status (text and JSON), the fencing history with the
// agent's output, the events, the status page, /metrics, nor any agent's
// log.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	const secret = "S3cr3t-hunter2"
	secrets := t.TempDir()
	if err := os.WriteFile(filepath.Join(secrets, "pdu.pass"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	power := filepath.Join(t.TempDir(), "power")
	if err := os.WriteFile(power, []byte("on"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra, addrs := httpFlags(t, blockSecrets, 3)
	for n := range extra {
		extra[n] = append(extra[n], "--fence-secret-dir", secrets)
	}
	c := startClusterExtra(t, blockSecrets, 3, "fake", extra)
	spec := squidServices + `policy:
  takeover: fence
fencing:
  devices:
    - name: pdu
      agent: fence_dummy
      hosts: [n1, n2, n3]
      action: "off"
      timeout: 20s
      params:
        type: file
        status_file: ` + power + `
        password: {file: ` + filepath.Join(secrets, "pdu.pass") + `}
`
	applyAndWait(c, c.agents[0], writeFile(t, c.dir, "fenced.yaml", spec), c.agents)
	dcName, err := c.agreed(c.agents, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	dc := c.byName(dcName)
	target := c.others(dc)[0]
	if r := c.run("fence", "--api", dc.api, target.name); r.code != 0 {
		t.Fatalf("raftlb fence %s: %s", target.name, r)
	}
	if got := strings.TrimSpace(string(mustRead(t, power))); got != "off" {
		t.Errorf("fence_dummy's power state %q, want off", got)
	}
	history := c.run("fence", "history", "--api", dc.api, "--json")
	if !strings.Contains(history.stdout, "******") {
		t.Errorf("the fence history does not show the agent's echo of the (masked) password: %s", history)
	}

	seen := map[string]string{"fence history": history.stdout + history.stderr}
	client := &http.Client{Timeout: cliTimeout, Transport: &http.Transport{DialContext: testkit.DialContext(t)}}
	for _, a := range c.agents {
		for _, args := range [][]string{{"status"}, {"status", "--json"}, {"events", "--json"}, {"fence", "history"}} {
			r := c.run(append(args, "--api", a.api)...)
			seen[fmt.Sprintf("%s on %s", strings.Join(args, " "), a.name)] = r.stdout + r.stderr
		}
		for _, path := range []string{"/", "/?part=main", "/metrics"} {
			resp, err := client.Get("http://" + addrs[a.name] + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen[fmt.Sprintf("GET %s on %s", path, a.name)] = string(body)
		}
		seen[a.name+"'s log"] = string(mustRead(t, a.logPath))
	}
	for where, text := range seen {
		if strings.Contains(text, secret) {
			t.Errorf("the password shows in %s", where)
		}
	}
}
