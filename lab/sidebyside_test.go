//go:build lab

package lab_test

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"sync"
)

// sideBySide collects, for each fault that raftlb's scenarios and
// keepalived's (keepalived_test.go) both measure in one VM run, the runs
// of each, so that the run ends with one table of the two and their
// ratios (TestMain prints it after the last test). The scenarios run in
// file order, keepalived's between raftlb's, so a figure cannot be
// compared where it is measured. A row with one side only (a -test.run
// that chose one) is left out.
type sideBySide struct {
	mu   sync.Mutex
	rows map[string]*sideRow
}

// sideRow is one fault's runs for each side, in one unit. better says
// which way is better: "lower" (an outage) or "higher" (connections
// kept).
type sideRow struct {
	unit, better       string
	raftlb, keepalived []float64
}

// compared is this run's table; the lab's tests run one at a time.
var compared = &sideBySide{rows: map[string]*sideRow{}}

func (s *sideBySide) row(name, unit, better string) *sideRow {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rows[name]
	if r == nil {
		r = &sideRow{unit: unit, better: better}
		s.rows[name] = r
	}
	return r
}

// raftlb records raftlb's runs of a fault where lower is better.
func (s *sideBySide) raftlb(name, unit string, runs []float64) {
	r := s.row(name, unit, "lower")
	r.raftlb = append(r.raftlb, runs...)
}

// keepalived records keepalived's runs of a fault where lower is better.
func (s *sideBySide) keepalived(name, unit string, runs []float64) {
	r := s.row(name, unit, "lower")
	r.keepalived = append(r.keepalived, runs...)
}

// kept records, for one side, how many of the judged connections lived
// on (as a percentage, higher is better).
func (s *sideBySide) kept(name, side string, kept, judged int) {
	if judged == 0 {
		return
	}
	r := s.row(name, "%", "higher")
	v := 100 * float64(kept) / float64(judged)
	if side == "raftlb" {
		r.raftlb = append(r.raftlb, v)
	} else {
		r.keepalived = append(r.keepalived, v)
	}
}

// print writes the table as comments and each ratio (raftlb ÷
// keepalived, of the medians and of the maxima) as a figure; a ratio
// whose keepalived side is zero is not a number and is left out (the
// row says both values).
func (s *sideBySide) print(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var names []string
	for n, r := range s.rows {
		if len(r.raftlb) > 0 && len(r.keepalived) > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	fmt.Fprintf(w, "# raftlb (takeover: lease) and keepalived side by side in this VM run: median / max of the runs (n), ratio raftlb ÷ keepalived\n")
	fmt.Fprintf(w, "# (the client opens a connection every 20 ms: outages within a few tens of ms are at its resolution, and their ratios noise)\n")
	fmt.Fprintf(w, "# %-32s %-24s %-24s %s\n", "fault", "raftlb", "keepalived", "ratio median / max")
	for _, n := range names {
		r := s.rows[n]
		ratio := "—"
		rm, km := median(r.raftlb), median(r.keepalived)
		rx, kx := slices.Max(r.raftlb), slices.Max(r.keepalived)
		if km > 0 && kx > 0 {
			ratio = fmt.Sprintf("%.2f / %.2f", rm/km, rx/kx)
		}
		fmt.Fprintf(w, "# %-32s %-24s %-24s %s (%s is better)\n", n, side(r.raftlb, r.unit), side(r.keepalived, r.unit), ratio, r.better)
	}
	for _, n := range names {
		r := s.rows[n]
		if km, kx := median(r.keepalived), slices.Max(r.keepalived); km > 0 && kx > 0 {
			fmt.Fprintf(w, "figure: lab_vs_keepalived_%s_median = %.2f ratio\n", n, median(r.raftlb)/km)
			fmt.Fprintf(w, "figure: lab_vs_keepalived_%s_max = %.2f ratio\n", n, slices.Max(r.raftlb)/kx)
		}
	}
}

func side(runs []float64, unit string) string {
	return fmt.Sprintf("%.0f / %.0f %s (%d)", median(runs), slices.Max(runs), unit, len(runs))
}
