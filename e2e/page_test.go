//go:build linux

package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// pageServices checks every node's port 3128 over TCP, fast, so a stopped
// real server goes down within a second.
const pageServices = squidServices + `    health_check:
      type: tcp
      interval: 200ms
      timeout: 150ms
      rise: 1
      fall: 2
`

// TestStatusPageInABrowser opens the DC's status page in Debian's headless
// Chromium, driven over the DevTools protocol: the DC and the real servers
// are shown; when one real server stops, the page shows it down without a
// reload (a marker set in the page survives). The screenshot is saved for
// a person to look at (RAFTLB_SCREENSHOT, or the test's log directory).
func TestStatusPageInABrowser(t *testing.T) {
	t.Parallel()
	chromium := "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Debian's chromium is not installed (make test installs it): %v", err)
	}
	extra, ports := httpFlags(t, blockPage, 3)
	servers := map[string]net.Listener{}
	for i, n := range []string{"n1", "n2", "n3"} {
		// The real server each node is, on the service's port.
		rs, err := net.Listen("tcp", fmt.Sprintf("127.0.%d.%d:3128", blockPage, i+1))
		if err != nil {
			t.Fatal(err)
		}
		servers[n] = rs
		go func() {
			for {
				c, err := rs.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	t.Cleanup(func() {
		for _, l := range servers {
			l.Close()
		}
	})
	c := startClusterExtra(t, blockPage, 3, "fake", extra)
	applyAndWait(c, c.agents[0], writeFile(t, c.dir, "squid.yaml", pageServices), c.agents)
	dc, err := c.agreed(c.agents, 3, 3)
	if err != nil {
		t.Fatal(err)
	}
	victim := c.others(c.byName(dc))[0]

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1100, 900))
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// No timeout on the browser's own context (it would end the browser);
	// the test's deadline bounds the whole.

	url := "http://" + ports[dc] + "/"
	victimRow := chromedp.CSS(fmt.Sprintf(`tr[data-server="%s:3128"] td.health`, victim.ip))
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatal(err)
	}
	dcText, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#dc")))
	if err != nil {
		t.Fatal(err)
	}
	if dcText != dc {
		t.Errorf("the page names %q as DC, want %s", dcText, dc)
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.raftlbMarker = 42`)); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.agents {
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](fmt.Sprintf(`document.querySelectorAll('tr[data-server="%s:3128"]').length`, a.ip)))
		if err != nil || n != 1 {
			t.Errorf("real server %s listed %d times (%v)", a.ip, n, err)
		}
	}
	health, err := chromedp.Run(ctx, chromedp.Text(victimRow))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(health, "up") {
		t.Errorf("before the stop the page shows %s as %q, want up", victim.ip, health)
	}

	// The victim's real server stops; the page shows it without a reload.
	servers[victim.name].Close()
	c.waitFor("the page to show "+victim.ip+" down", 30*time.Second, func() error {
		if health, err = chromedp.Run(ctx, chromedp.Text(victimRow)); err != nil {
			return err
		}
		if !strings.HasPrefix(health, "down") {
			return fmt.Errorf("the page shows %q", health)
		}
		return nil
	})
	marker, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.raftlbMarker || 0`))
	if err != nil {
		t.Fatal(err)
	}
	if marker != 42 {
		t.Error("the page was reloaded to show the change; it should update in place")
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	path := os.Getenv("RAFTLB_SCREENSHOT")
	if path == "" {
		path = filepath.Join(os.TempDir(), "raftlb-status-page.png")
	}
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page with %s down: %s", victim.ip, path)
}
