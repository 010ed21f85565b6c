package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCheckDestination(t *testing.T) {
	for _, tc := range []struct {
		network, address string
		ok               bool
	}{
		{"tcp", "127.0.0.1:80", true},
		{"tcp", "127.0.0.42:7946", true},
		{"tcp6", "[::1]:80", true},
		{"tcp", "[::ffff:127.0.0.1]:80", true},
		{"unix", "/run/raftlb/raftlb.sock", true},
		{"tcp", "172.95.69.30:3128", false}, // the documentation's public range
		{"tcp", "10.0.0.1:80", false},
		{"udp", "8.8.8.8:53", false},
		{"tcp", "[fd95:69::30]:3128", false},
		{"tcp", "localhost:80", false}, // a name: the Control hook sees addresses only
		{"tcp", "no-port", false},
	} {
		err := CheckDestination(tc.network, tc.address)
		if (err == nil) != tc.ok {
			t.Errorf("CheckDestination(%s, %s) = %v, want ok=%v", tc.network, tc.address, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrOutsideSandbox) {
			t.Errorf("CheckDestination(%s, %s) = %v, want ErrOutsideSandbox", tc.network, tc.address, err)
		}
	}
}

// TestDialerRefusesBeforeSending: the refusal comes from the Control hook,
// before connect(2), and fails the test that tried.
func TestDialerRefusesBeforeSending(t *testing.T) {
	rec := &recordingTB{TB: t}
	_, err := Dialer(rec).DialContext(context.Background(), "tcp", "172.95.69.30:3128")
	if !errors.Is(err, ErrOutsideSandbox) {
		t.Fatalf("dial outside loopback: %v, want ErrOutsideSandbox", err)
	}
	if len(rec.errors) != 1 {
		t.Errorf("the refusal failed the test %d times, want once", len(rec.errors))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := Dial(t, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial loopback: %v", err)
	}
	c.Close()
}

type recordingTB struct {
	testing.TB
	errors []string
}

func (r *recordingTB) Errorf(format string, args ...any) { r.errors = append(r.errors, format) }

// dialCall matches the ways a test could open a connection itself.
var dialCall = regexp.MustCompile(`\bnet\.Dial(TCP|UDP|IP|Timeout)?\(|\.DialContext\(|\bnet\.Dialer\{|\btls\.Dial(WithDialer)?\(|\bhttp\.(Get|Post|Head|PostForm)\(`)

// TestNamespaceDialerRefusesHome: a namespace dialer used from the test's
// own network namespace refuses before a packet is sent, and fails the
// test. (Its use from a namespace a test created is the dataplane's kernel
// tests'.)
func TestNamespaceDialerRefusesHome(t *testing.T) {
	rec := &recordingTB{TB: t}
	_, err := NamespaceDialer(rec).DialContext(context.Background(), "tcp", "172.95.69.30:3128")
	if !errors.Is(err, ErrOutsideSandbox) || len(rec.errors) != 1 {
		t.Errorf("dial from home: %v with %d failures, want ErrOutsideSandbox and one", err, len(rec.errors))
	}
}

// TestOnlySandboxDials: no test file of the repository dials by itself,
// except over a unix socket: every other dial goes through this package,
// which refuses anything but loopback. The kernel lab's scenarios (build
// tag lab) run inside the namespaces they create and are exempt.
func TestOnlySandboxDials(t *testing.T) {
	root := moduleRoot(t)
	var offenders []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); strings.HasPrefix(name, ".") || name == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") || filepath.Dir(path) == filepath.Join(root, "internal", "testkit") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		if strings.Contains(src, "//go:build lab") {
			return nil
		}
		for i, line := range strings.Split(src, "\n") {
			if dialCall.MatchString(line) && !strings.Contains(line, `"unix"`) && !strings.Contains(line, "testkit.") {
				rel, _ := filepath.Rel(root, path)
				offenders = append(offenders, fmt.Sprintf("%s:%d: %s", rel, i+1, strings.TrimSpace(line)))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(offenders) > 0 {
		t.Errorf("tests that dial without the sandbox (use testkit.Dial, testkit.Dialer or testkit.DialContext):\n%s", strings.Join(offenders, "\n"))
	}
}

// TestDialCallCatchesDials proves the scan above can fail.
func TestDialCallCatchesDials(t *testing.T) {
	for _, line := range []string{
		`c, err := net.Dial("tcp", addr)`,
		`net.DialTimeout("tcp", "172.95.69.30:3128", time.Second)`,
		`d := &net.Dialer{}`,
		`conn, err := d.DialContext(ctx, "tcp", a)`,
		`resp, err := http.Get(url)`,
	} {
		if !dialCall.MatchString(line) {
			t.Errorf("the scan misses %q", line)
		}
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
