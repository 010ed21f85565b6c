//go:build linux

package e2e

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// idleUnderLoad is how long BenchmarkIdleUnderLoad watches; make bench
// takes the default, a soak asks for ten minutes.
var idleUnderLoad = flag.Duration("e2e.idle-under-load", 20*time.Second, "how long BenchmarkIdleUnderLoad watches an idle cluster beside busy CPUs")

// BenchmarkIdleUnderLoad: three agents on loopback at the default timings,
// idle, while every CPU of the host is kept busy by other work (a busy
// loop per CPU in this process, at the agents' priority). It prints how
// many times the cluster's Raft term moved — an election, which on an idle
// cluster is a spurious DC change — and whether the DC changed:
//
//	go test ./e2e -run '^$' -bench IdleUnderLoad -benchtime 1x -e2e.idle-under-load 10m
//
// Like the other benchmarks, it prints figures and judges nothing.
func BenchmarkIdleUnderLoad(b *testing.B) {
	c := startCluster(b, blockBench, 3)
	clients := apiClients(b, c.agents)
	var dc string
	c.waitFor("one DC, all 3 online", changeTimeout, func() error {
		var err error
		dc, err = apiAgreed(clients, c.agents, 3)
		return err
	})
	term := func() (uint64, string) {
		var top uint64
		leader := ""
		for _, a := range c.agents {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			st, err := clients[a].Status(ctx)
			cancel()
			if err != nil {
				continue // a busy host may delay an answer: the term is read again
			}
			if st.Term > top {
				top, leader = st.Term, st.DC
			}
		}
		return top, leader
	}
	first, _ := term()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range runtime.NumCPU() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				if n%(1<<20) == 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
			}
		}()
	}
	start := time.Now()
	changes, last := 0, dc
	tick := time.NewTicker(time.Second)
	for time.Since(start) < *idleUnderLoad {
		<-tick.C
		if _, leader := term(); leader != "" && leader != last {
			changes++
			last = leader
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	final, _ := term()

	for _, f := range []struct {
		name  string
		value float64
		unit  string
	}{
		{"idle_under_load_watched", time.Since(start).Seconds(), "s"},
		{"idle_under_load_busy_cpus", float64(runtime.NumCPU()), "count"},
		{"idle_under_load_elections", float64(final - first), "count"},
		{"idle_under_load_dc_changes", float64(changes), "count"},
	} {
		fmt.Printf("figure: %s = %.0f %s\n", f.name, f.value, f.unit)
		b.ReportMetric(f.value, f.name)
	}
}
