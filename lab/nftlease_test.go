//go:build lab

package lab_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNFTLeaseOnTheLabKernel runs the data plane's kernel tests on the
// lab's kernel, the one the agents run on here, not only on the
// development machine's: the millisecond VIP lease's
// (dataplane/lease_linux_test.go: two namespaces, a veth pair, nftables's
// arp and ip6 families, ARP and neighbour-solicitation probes judged by
// the answers) and the IPVS sync daemon's (dataplane/sync_linux_test.go,
// which need IPVS, missing on the development machines). None may skip:
// the lab kernel has everything they need. Their figures (the expiry's
// precision, the cost of one renewal, the sync's delay) are passed on.
func TestNFTLeaseOnTheLabKernel(t *testing.T) {
	bin := filepath.Join(os.Getenv("LAB_REPO"), "bin", "dataplane.test")
	cmd := exec.Command(bin, "-test.run", "^(TestLeaseKernel|TestSyncKernel)", "-test.v", "-test.count=1")
	out, err := cmd.CombinedOutput()
	if err := os.WriteFile(filepath.Join(labOut(), "nftlease.log"), out, 0o644); err != nil {
		t.Logf("keeping the output: %v", err)
	}
	passed := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "figure: "):
			fmt.Println(strings.Replace(line, "figure: ", "figure: lab_", 1))
		case strings.HasPrefix(line, "--- SKIP"):
			t.Errorf("skipped on the lab kernel: %s", line)
		case strings.HasPrefix(line, "--- FAIL"):
			t.Errorf("%s", line)
		case strings.HasPrefix(line, "--- PASS: TestLeaseKernel"), strings.HasPrefix(line, "--- PASS: TestSyncKernel"):
			passed++
		}
	}
	if t.Failed() || err != nil {
		// What the kernel said while they ran: IPVS logs its sync
		// threads' starts and stops, and a stalled task shows here.
		if log, derr := exec.Command("dmesg", "--ctime").CombinedOutput(); derr == nil {
			lines := strings.Split(strings.TrimSpace(string(log)), "\n")
			t.Logf("the lab kernel's last messages:\n%s", strings.Join(lines[max(0, len(lines)-80):], "\n"))
		}
	}
	if err != nil || passed == 0 {
		t.Fatalf("the lease's kernel tests on the lab kernel: %v, %d passed; output:\n%s", err, passed, out)
	}
}

func labOut() string {
	if d := os.Getenv("LAB_OUT"); d != "" {
		return d
	}
	return "/run/labout"
}
