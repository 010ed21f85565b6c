//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftlb/raftlb/api"
)

const (
	// failoverRounds is how many times the DC is killed.
	failoverRounds = 20
	// failoverPoll is how often the survivors are asked for a DC while
	// one is missing: the resolution of the failover figures.
	failoverPoll = 5 * time.Millisecond
	// idleWindow is how long the idle cluster is watched for CPU use.
	idleWindow = 10 * time.Second
	// userHZ is the unit of the times in /proc/PID/stat. The kernel fixes
	// USER_HZ at 100 on the architectures we run on, and the standard
	// library has no sysconf(_SC_CLK_TCK) to ask.
	userHZ = 100
)

// BenchmarkFailover measures, on loopback with the default timings, how
// long a 3-node cluster has no serving DC after `kill -9` of the DC, and
// what an idle agent costs in memory and CPU.
//
// It is a measurement, not a loop over b.N: it runs once whatever b.N is,
// and takes about a minute. Run it alone and once:
//
//	go test ./e2e -run '^$' -bench Failover -benchtime 1x
//
// Each figure is printed on its own line as "figure: NAME = VALUE UNIT" and
// reported with b.ReportMetric. Figures are never compared with
// thresholds: a loaded machine makes them worse without anything being
// wrong, so judging them is left to whoever reads them.
func BenchmarkFailover(b *testing.B) {
	if b.N > 1 {
		b.Logf("b.N is %d; the failover measurement runs once regardless (use -benchtime 1x)", b.N)
	}
	c := startCluster(b, blockBench, 3)
	clients := apiClients(b, c.agents)

	var gaps []time.Duration
	for round := 1; round <= failoverRounds; round++ {
		gaps = append(gaps, failoverOnce(c, clients, round))
	}
	rss, cpu := idleCost(b, c.agents, idleWindow)

	slices.Sort(gaps)
	ms := func(d time.Duration) float64 { return float64(d.Round(time.Millisecond).Milliseconds()) }
	figures := []struct {
		name  string
		value float64
		unit  string
		// metric is the unit for b.ReportMetric, which allows no spaces.
		metric string
		format string
	}{
		{"failover_dc_serving_min", ms(gaps[0]), "ms", "ms-failover-min", "%.0f"},
		{"failover_dc_serving_median", ms(median(gaps)), "ms", "ms-failover-median", "%.0f"},
		{"failover_dc_serving_p99", ms(percentile(gaps, 99)), "ms", "ms-failover-p99", "%.0f"},
		{"failover_runs", float64(len(gaps)), "count", "failover-runs", "%.0f"},
		{"agent_rss_max", slices.Max(rss) / (1 << 20), "MiB", "MiB-rss-max", "%.1f"},
		{"agent_idle_cpu_max", slices.Max(cpu), "%", "%cpu-idle-max", "%.1f"},
	}
	for _, f := range figures {
		fmt.Printf("figure: %s = "+f.format+" %s\n", f.name, f.value, f.unit)
		b.ReportMetric(f.value, f.metric)
	}
	// The time per iteration is the whole minute of setup and waiting:
	// meaningless here, so it is left out of the report.
	b.ReportMetric(0, "ns/op")
}

// failoverOnce kills the DC at t0, polls the survivors' admin API every
// failoverPoll until one reports a different DC with quorum at t1, and
// returns t1 - t0. It then restarts the killed agent on its data directory
// and waits until all 3 are online with one DC, so every round starts from
// a whole cluster.
func failoverOnce(c *cluster, clients map[*agent]*api.Client, round int) time.Duration {
	c.t.Helper()
	var dc string
	c.waitFor(fmt.Sprintf("round %d: one DC to kill", round), changeTimeout, func() error {
		var err error
		dc, err = apiAgreed(clients, c.agents, 3)
		return err
	})
	old := c.byName(dc)
	survivors := c.others(old)

	t0 := time.Now()
	c.signal(old, syscall.SIGKILL)
	var gap time.Duration
poll:
	for {
		for _, a := range survivors {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := clients[a].Status(ctx)
			cancel()
			if err == nil && st.Quorum && st.DC != "" && st.DC != old.name {
				gap = time.Since(t0)
				break poll
			}
		}
		if time.Since(t0) > changeTimeout {
			c.t.Fatalf("round %d: no new DC %s after killing %s", round, changeTimeout, old.name)
		}
		time.Sleep(failoverPoll)
	}

	c.waitExit(old)
	c.start(old)
	c.waitFor(fmt.Sprintf("round %d: %s restarted, all 3 online with one DC", round, old.name), changeTimeout, func() error {
		_, err := apiAgreed(clients, c.agents, 3)
		return err
	})
	return gap
}

// apiClients opens an admin API client for each agent.
func apiClients(tb testing.TB, agents []*agent) map[*agent]*api.Client {
	tb.Helper()
	clients := map[*agent]*api.Client{}
	for _, a := range agents {
		cl, err := api.NewClient(a.api)
		if err != nil {
			tb.Fatalf("admin API client for %s: %v", a.name, err)
		}
		clients[a] = cl
	}
	return clients
}

// apiAgreed is cluster.agreed over the admin API: the failover rounds
// poll often, and a CLI process per poll would load the machine whose
// timing is being measured.
func apiAgreed(clients map[*agent]*api.Client, view []*agent, online int) (string, error) {
	dc := ""
	for _, a := range view {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := clients[a].Status(ctx)
		cancel()
		if err != nil {
			return "", fmt.Errorf("status of %s: %w", a.name, err)
		}
		if !st.Quorum || st.DC == "" {
			return "", fmt.Errorf("%s: no DC with quorum (warning %q)", a.name, st.Warning)
		}
		if dc != "" && st.DC != dc {
			return "", fmt.Errorf("%s says the DC is %s, another node says %s", a.name, st.DC, dc)
		}
		dc = st.DC
		n := 0
		for _, ns := range st.Nodes {
			if ns.Status == "online" {
				n++
			}
		}
		if n != online {
			return "", fmt.Errorf("%s: %d nodes online, want %d", a.name, n, online)
		}
	}
	return dc, nil
}

// idleCost leaves the agents alone for window and returns each one's
// resident memory at the end (bytes) and CPU use over the window (percent
// of one core). Nothing polls them meanwhile, so the CPU is what the
// agents spend on heartbeats and gossip alone.
func idleCost(tb testing.TB, agents []*agent, window time.Duration) (rss, cpu []float64) {
	tb.Helper()
	before := make([]uint64, len(agents))
	for i, a := range agents {
		before[i] = cpuTicks(tb, a.pid())
	}
	start := time.Now()
	time.Sleep(window) // the measurement window itself, not a wait for a condition
	elapsed := time.Since(start)
	for i, a := range agents {
		used := float64(cpuTicks(tb, a.pid())-before[i]) / userHZ
		cpu = append(cpu, 100*used/elapsed.Seconds())
		rss = append(rss, residentBytes(tb, a.pid()))
	}
	return rss, cpu
}

// cpuTicks returns utime+stime of pid from /proc/PID/stat, in USER_HZ
// ticks.
func cpuTicks(tb testing.TB, pid int) uint64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatalf("cpu time of pid %d: %v", pid, err)
	}
	// The command name (field 2) is in parentheses and may hold spaces,
	// so count fields from the last ')': state is field 3, utime 14 and
	// stime 15.
	stat := string(data)
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || len(strings.Fields(stat[i+1:])) < 13 {
		tb.Fatalf("cpu time of pid %d: unexpected /proc/%d/stat: %q", pid, pid, stat)
	}
	fields := strings.Fields(stat[i+1:])
	var total uint64
	for _, f := range fields[11:13] {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			tb.Fatalf("cpu time of pid %d: %v", pid, err)
		}
		total += v
	}
	return total
}

// residentBytes returns VmRSS of pid from /proc/PID/status.
func residentBytes(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("memory of pid %d: %v", pid, err)
	}
	for line := range strings.Lines(string(data)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		kb, unit, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(kb, 64)
		if err != nil || strings.TrimSpace(unit) != "kB" {
			tb.Fatalf("memory of pid %d: unexpected VmRSS line %q", pid, line)
		}
		return v * 1024
	}
	tb.Fatalf("memory of pid %d: no VmRSS line in /proc/%d/status", pid, pid)
	return 0
}

// median of sorted durations.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile of sorted durations by nearest rank. With fewer than 100
// samples the 99th percentile is the largest one.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}
