//go:build lab

package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The lab's LAN: a bridge standing in for the switch, and one network
// namespace per machine of the source documents plus one for a client,
// each plugged into the bridge with a veth pair ("v-NS" on the bridge,
// "eth0" inside the namespace).
const (
	VIP = "172.95.69.100"
	// VIP6 is the IPv6 VIP; the LAN also carries fd95:69::/64, each
	// machine at the host part of its IPv4 address (IP6).
	VIP6   = "fd95:69::100"
	Bridge = "br0"
	M30    = "m30"
	M40    = "m40"
	M50    = "m50"
	Client = "client"
	// PrefixLen is the LAN's netmask length, for addresses on eth0.
	PrefixLen = 24
)

// Nodes are the cluster's machines, in the order of their addresses.
func Nodes() []string { return []string{M30, M40, M50} }

// Namespaces are all the machines on the LAN: the nodes and the client.
func Namespaces() []string { return append(Nodes(), Client) }

// IP is the LAN address of a machine: 172.95.69.30 for m30, and so on.
// An unknown name is a bug in the test, hence the panic.
func IP(ns string) string {
	switch ns {
	case M30:
		return "172.95.69.30"
	case M40:
		return "172.95.69.40"
	case M50:
		return "172.95.69.50"
	case Client:
		return "172.95.69.10"
	}
	panic(fmt.Sprintf("lab: no machine %q", ns))
}

// IP6 is the LAN's IPv6 address of a machine: fd95:69::30 for m30, and
// so on.
func IP6(ns string) string {
	v4 := netip.MustParseAddr(IP(ns)).As4()
	return fmt.Sprintf("fd95:69::%d", v4[3])
}

// mac is a machine's fixed MAC, derived from its address (02: = locally
// administered) so that logs and failures can be read without a lookup.
func mac(ns string) string {
	var a, b, c, d int
	fmt.Sscanf(IP(ns), "%d.%d.%d.%d", &a, &b, &c, &d)
	return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", a, b, c, d)
}

// BridgePort is the bridge-side end of a machine's cable.
func BridgePort(ns string) string { return "v-" + ns }

// execTimeout bounds every command: under TCG one takes a tenth of a
// second or so, and one that hangs should fail its test, not run into the
// VM's timeout.
const execTimeout = time.Minute

// Lab is the network of one test. New builds it; it is torn down, with
// every process started in it, when the test ends.
type Lab struct {
	t      testing.TB
	repo   string
	logDir string

	mu    sync.Mutex
	procs []*Proc
	cmds  *os.File // every command run, with its output: LogDir/commands.log
}

// New builds the lab network for t, first removing what an earlier test
// may have left behind.
func New(t testing.TB) *Lab {
	t.Helper()
	repo, err := repoDir()
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("LAB_OUT")
	if out == "" {
		out = "/run/labout"
	}
	l := &Lab{t: t, repo: repo, logDir: filepath.Join(out, strings.ReplaceAll(t.Name(), "/", "_"))}
	if err := os.MkdirAll(l.logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if l.cmds, err = os.OpenFile(filepath.Join(l.logDir, "commands.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		t.Fatal(err)
	}
	l.Teardown()
	t.Cleanup(func() {
		l.Teardown()
		l.cmds.Close()
	})
	if err := l.build(); err != nil {
		t.Fatalf("lab network: %v", err)
	}
	return l
}

// build wires the LAN. It runs ip in batches: under TCG every exec costs
// 0.1–0.2 s, and one command per step would add seconds to every test.
func (l *Lab) build() error {
	root := []string{
		"link add " + Bridge + " type bridge",
		"link set " + Bridge + " up",
	}
	for _, ns := range Namespaces() {
		root = append(root,
			"netns add "+ns,
			// The namespace end is created inside the namespace, so no
			// "eth0" ever exists in the VM's own namespace.
			fmt.Sprintf("link add %s type veth peer name eth0 address %s netns %s", BridgePort(ns), mac(ns), ns),
			fmt.Sprintf("link set %s master %s up", BridgePort(ns), Bridge),
		)
	}
	if err := l.ipBatch("", root...); err != nil {
		return err
	}
	for _, ns := range Namespaces() {
		if err := l.ipBatch(ns,
			"link set lo up",
			fmt.Sprintf("addr add %s/%d dev eth0", IP(ns), PrefixLen),
			// No duplicate address detection: the address is usable at
			// once, not tentative for a second.
			fmt.Sprintf("addr add %s/64 dev eth0 nodad", IP6(ns)),
			"link set eth0 up",
		); err != nil {
			return err
		}
	}
	return nil
}

// ipBatch runs ip commands (written without the leading "ip") in
// namespace ns with a single ip process; it stops at the first failure.
func (l *Lab) ipBatch(ns string, cmds ...string) error {
	args := []string{"ip", "-batch", "-"}
	if ns != "" {
		args = []string{"ip", "-n", ns, "-batch", "-"}
	}
	_, err := l.exec(strings.Join(cmds, "\n")+"\n", args)
	return err
}

// Teardown kills the processes started in the lab and deletes the
// namespaces (which takes their veths, addresses and IPVS tables with
// them) and the bridge. It runs at the end of every test and may be
// called early; it leaves nothing for the next test to trip over.
func (l *Lab) Teardown() {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	// lo goes down first. After an IPv6 IPVS service with the node itself
	// among its real servers, deleting eth0 first waited forever
	// ("unregister_netdevice: waiting for eth0 to become free"), even with
	// the IPVS table flushed. Most likely IPVS's cached route to the local
	// real server: its device is lo, IPVS drops it only when lo goes down,
	// and it still holds eth0.
	for _, ns := range Nodes() {
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			if err := l.ipBatch(ns, "link set lo down"); err != nil {
				l.t.Errorf("teardown: %v", err)
			}
		}
	}
	var cmds []string
	for _, ns := range Namespaces() {
		// Delete the veth pair explicitly: a deleted namespace releases
		// its devices asynchronously, and the next test would race it.
		if _, err := os.Stat("/sys/class/net/" + BridgePort(ns)); err == nil {
			cmds = append(cmds, "link del "+BridgePort(ns))
		}
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			cmds = append(cmds, "netns del "+ns)
		}
	}
	if _, err := os.Stat("/sys/class/net/" + Bridge); err == nil {
		cmds = append(cmds, "link del "+Bridge)
	}
	if len(cmds) > 0 {
		if err := l.ipBatch("", cmds...); err != nil {
			l.t.Errorf("teardown: %v", err)
		}
	}
}

// LogDir is where this test's logs go: the results share, so they reach
// the host as .lab/out/TESTNAME/.
func (l *Lab) LogDir() string { return l.logDir }

// Bin is the path of a binary that lab/run.sh built into the repo's bin/
// (raftlb, raftlb-lab).
func (l *Lab) Bin(name string) string { return filepath.Join(l.repo, "bin", name) }

// Exec runs a command in namespace ns ("" for the VM's own) and returns
// its combined output. The error names the command and includes the
// output, which is usually the only explanation there is.
func (l *Lab) Exec(ns string, args ...string) (string, error) {
	return l.exec("", nsArgv(ns, args))
}

func (l *Lab) exec(stdin string, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), execTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = strings.NewReader(stdin)
	// Once the command is killed, stop waiting for output pipes that a
	// leftover child may still hold open.
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	l.logCommand(argv, stdin, out, err)
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Run is Exec for steps a test cannot go on without: it fails the test.
func (l *Lab) Run(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.Exec(ns, args...)
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

// RunStdin is Run with stdin (a fence agent's options, say).
func (l *Lab) RunStdin(ns, stdin string, args ...string) string {
	l.t.Helper()
	out, err := l.exec(stdin, nsArgv(ns, args))
	if err != nil {
		l.t.Fatal(err)
	}
	return out
}

func nsArgv(ns string, args []string) []string {
	if ns == "" {
		return args
	}
	return append([]string{"ip", "netns", "exec", ns}, args...)
}

func (l *Lab) logCommand(argv []string, stdin string, out []byte, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	status := "ok"
	if err != nil {
		status = err.Error()
	}
	fmt.Fprintf(l.cmds, "%s $ %s [%s]\n", time.Now().Format("15:04:05.000"), strings.Join(argv, " "), status)
	if stdin != "" {
		fmt.Fprintf(l.cmds, "  stdin:\n%s", indent(stdin))
	}
	if len(out) > 0 {
		fmt.Fprintf(l.cmds, "  output:\n%s", indent(string(out)))
	}
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "    " + strings.ReplaceAll(s, "\n", "\n    ") + "\n"
}

// Eventually polls cond until it reports true, and fails with cond's last
// error (or a timeout) after timeout. Scenarios wait on what they can
// observe, never for a fixed time.
func Eventually(timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("condition not met")
			}
			return fmt.Errorf("after %v: %w", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// repoDir is the repository's top directory: LAB_REPO, which lab/init
// sets, or the nearest parent of the working directory with a go.mod.
func repoDir() (string, error) {
	if d := os.Getenv("LAB_REPO"); d != "" {
		return d, nil
	}
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("lab: cannot find the repository (no LAB_REPO, no go.mod above the working directory)")
		}
		d = parent
	}
}
