package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/raftlb/raftlb/internal/cli"
)

type probeConfig struct {
	target   string
	interval time.Duration
	timeout  time.Duration
	duration time.Duration // 0: until ctx is done
	count    int           // 0: no limit
	// sport, when set, is the local port of the first attempt; attempt n
	// uses sport+n-1. A scenario can then reuse the source ports of an
	// earlier probe, as a busy client reuses its ephemeral ports.
	sport int
}

func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("probe", stderr)
	var c probeConfig
	fs.StringVar(&c.target, "target", "", "IP:PORT to connect to, normally the VIP (required)")
	fs.DurationVar(&c.interval, "interval", 20*time.Millisecond, "time between the starts of two attempts")
	fs.DurationVar(&c.timeout, "timeout", 200*time.Millisecond, "limit for one attempt: connect and read the answer")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to probe")
	fs.IntVar(&c.count, "count", 0, "stop after this many attempts (0: no limit)")
	fs.IntVar(&c.sport, "source-port", 0, "bind attempt N to local port source-port+N-1 (needs --count; 0: the kernel picks)")
	untilSignal := fs.Bool("until-signal", false, "probe until SIGTERM or SIGINT instead of for --duration")
	out := fs.String("out", "", "write the JSON report to this file instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.target); err != nil || c.target == "" {
		return fmt.Errorf("%w: --target must be IP:PORT, got %q", cli.ErrUsage, c.target)
	}
	if c.interval <= 0 || c.timeout <= 0 {
		return fmt.Errorf("%w: --interval and --timeout must be positive", cli.ErrUsage)
	}
	if c.count < 0 {
		return fmt.Errorf("%w: --count must not be negative", cli.ErrUsage)
	}
	if c.sport != 0 && (c.count == 0 || c.sport < 1 || c.sport+c.count-1 > 65535) {
		return fmt.Errorf("%w: --source-port needs --count, and ports source-port … source-port+count-1 must lie in 1…65535", cli.ErrUsage)
	}
	if *untilSignal {
		c.duration = 0
	} else if c.duration <= 0 {
		return fmt.Errorf("%w: --duration must be positive (or use --until-signal)", cli.ErrUsage)
	}

	// Lab tests that probe while something else happens wait for this line.
	fmt.Fprintf(stdout, "probing %s every %v\n", c.target, c.interval)
	r := probe(ctx, c)
	fmt.Fprintf(stderr, "probe %s: %d attempts, %d failed, %d outages, longest %.0f ms, answers %v\n",
		r.Target, r.Attempts, r.Failures, r.Outages, r.LongestOutageMS, r.Answers)

	return writeReport(*out, stdout, r)
}

// writeReport writes a command's JSON report to the file out, atomically,
// or to stdout when out is empty.
func writeReport(out string, stdout io.Writer, r any) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if out == "" {
		_, err = stdout.Write(data)
		return err
	}
	return writeFileAtomic(out, data)
}

// probe starts an attempt every interval until the duration, the count or
// ctx ends it, then waits for the attempts still running. Attempts run
// concurrently: while the target is down each may take the whole timeout,
// and starting them on schedule anyway is what keeps an outage's
// resolution at the interval rather than at the timeout.
func probe(ctx context.Context, c probeConfig) Report {
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	var (
		mu       sync.Mutex
		attempts []Attempt
		wg       sync.WaitGroup
	)
	start := time.Now()
	tick := time.NewTicker(c.interval)
	defer tick.Stop()
probing:
	for n := 1; ; n++ {
		sport := 0
		if c.sport != 0 {
			sport = c.sport + n - 1
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := attempt(c.target, sport, c.timeout)
			mu.Lock()
			attempts = append(attempts, a)
			mu.Unlock()
		}()
		if n == c.count {
			break
		}
		select {
		case <-ctx.Done():
			break probing
		case <-tick.C:
		}
	}
	// Attempts in flight finish on their own within the timeout; cutting
	// them short would record failures the target did not cause.
	wg.Wait()
	return summarize(c.target, c.interval, c.timeout, start, time.Now(), attempts)
}

// attempt opens one new connection to target, from local port sport
// unless it is 0, and reads the one-line answer that raftlb-lab serve sends
// before closing.
func attempt(target string, sport int, timeout time.Duration) Attempt {
	start := time.Now()
	a := Attempt{Start: start, SourcePort: sport}
	deadline := start.Add(timeout)
	answer, err := func() (string, error) {
		d := net.Dialer{Deadline: deadline}
		if sport != 0 {
			d.LocalAddr = &net.TCPAddr{Port: sport}
			// The server closes first, so this side keeps no TIME_WAIT;
			// SO_REUSEADDR covers a previous attempt still closing.
			d.Control = func(_, _ string, rc syscall.RawConn) error {
				var serr error
				if err := rc.Control(func(fd uintptr) {
					serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
				}); err != nil {
					return err
				}
				return serr
			}
		}
		conn, err := d.Dial("tcp", target)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		conn.SetDeadline(deadline)
		line, err := bufio.NewReader(io.LimitReader(conn, 256)).ReadString('\n')
		if err != nil && !(errors.Is(err, io.EOF) && line != "") {
			return "", err
		}
		return strings.TrimSpace(line), nil
	}()
	a.TookMS = ms(time.Since(start))
	switch {
	case err != nil:
		a.Error, a.Detail = classify(err), err.Error()
	case answer == "":
		a.Error = "empty"
	default:
		a.OK, a.Answer = true, answer
	}
	return a
}

// classify names the failure the way an operator reads it, so a report can
// tell "nobody holds the VIP" (timeout) from "the VIP holder has no
// service" (refused) from "a connection broke" (reset, eof).
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	default:
		return "other"
	}
}

// writeFileAtomic writes data so that a reader polling for path sees
// either nothing or the whole report.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}
