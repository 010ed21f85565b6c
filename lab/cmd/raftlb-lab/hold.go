package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/lab"
)

type (
	HoldReport = lab.HoldReport
	HoldConn   = lab.HoldConn
)

type holdConfig struct {
	target   string
	conns    int
	interval time.Duration
	timeout  time.Duration
	duration time.Duration // 0: until ctx is done
	count    int           // exchanges per connection; 0: no limit
}

// runHold is the judge of established connections: it opens --conns
// connections to a `serve --echo` behind the target, then exchanges a line
// on each every interval, and reports whether each kept answering from
// the server that greeted it.
func runHold(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("hold", stderr)
	var c holdConfig
	fs.StringVar(&c.target, "target", "", "IP:PORT of a serve --echo, normally the VIP (required)")
	fs.IntVar(&c.conns, "conns", 9, "how many connections to hold")
	fs.DurationVar(&c.interval, "interval", 200*time.Millisecond, "time between two exchanges on one connection")
	// Long: an outage of seconds is to be waited out, as a real client's
	// TCP would, not counted as a failure.
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "limit for connecting, and for one exchange to be answered")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to hold, once every connection is open")
	fs.IntVar(&c.count, "count", 0, "end each connection after this many exchanges (0: no limit)")
	untilSignal := fs.Bool("until-signal", false, "hold until SIGTERM or SIGINT instead of for --duration")
	out := fs.String("out", "", "write the JSON report to this file instead of stdout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.target); err != nil || c.target == "" {
		return fmt.Errorf("%w: --target must be IP:PORT, got %q", cli.ErrUsage, c.target)
	}
	if c.conns < 1 {
		return fmt.Errorf("%w: --conns must be at least 1, got %d", cli.ErrUsage, c.conns)
	}
	if c.interval <= 0 || c.timeout <= 0 {
		return fmt.Errorf("%w: --interval and --timeout must be positive", cli.ErrUsage)
	}
	if c.count < 0 {
		return fmt.Errorf("%w: --count must not be negative", cli.ErrUsage)
	}
	if *untilSignal {
		c.duration = 0
	} else if c.duration <= 0 {
		return fmt.Errorf("%w: --duration must be positive (or use --until-signal)", cli.ErrUsage)
	}

	r, err := hold(ctx, c, func() {
		// Lab tests wait for this line: every connection is established.
		fmt.Fprintf(stdout, "holding %d connections to %s\n", c.conns, c.target)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "hold %s: %d connections, %d alive, %d waiting, %d reset, %d eof, %d moved, %d other; servers %v\n",
		r.Target, r.Conns, r.Alive, r.Waiting, r.Reset, r.EOF, r.Moved, r.OtherFailures, r.Servers)
	return writeReport(*out, stdout, r)
}

// hold opens every connection and reads its greeting, calls ready, then
// exchanges lines on all of them until the duration or ctx ends it, or
// every connection has failed or done its count. It fails only when a
// connection cannot be established: what happens to established ones is
// the report.
func hold(ctx context.Context, c holdConfig, ready func()) (HoldReport, error) {
	conns := make([]*held, 0, c.conns)
	for i := range c.conns {
		h, err := openHeld(ctx, c.target, c.timeout)
		if err != nil {
			for _, h := range conns {
				h.conn.Close()
			}
			return HoldReport{}, fmt.Errorf("connection %d of %d to %s: %w", i+1, c.conns, c.target, err)
		}
		conns = append(conns, h)
	}
	ready()

	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, h := range conns {
		wg.Go(func() { h.run(ctx, c.interval, c.timeout, c.count) })
	}
	wg.Wait()

	r := HoldReport{
		Target:     c.target,
		IntervalMS: ms(c.interval),
		TimeoutMS:  ms(c.timeout),
		Start:      start,
		End:        time.Now(),
		Conns:      len(conns),
		Servers:    map[string]int{},
		Records:    make([]HoldConn, len(conns)),
	}
	for i, h := range conns {
		rec := h.rec
		r.Records[i] = rec
		r.Servers[rec.Server]++
		switch rec.Error {
		case "":
			if rec.Waiting {
				r.Waiting++
			} else {
				r.Alive++
			}
		case "reset":
			r.Reset++
		case "eof":
			r.EOF++
		case "moved":
			r.Moved++
		default:
			r.OtherFailures++
		}
	}
	return r, nil
}

// held is one long-lived connection; its run loop alone touches it.
type held struct {
	conn net.Conn
	r    *bufio.Reader
	rec  HoldConn
}

// openHeld connects to target and reads the greeting, which names the
// server the connection reached.
func openHeld(ctx context.Context, target string, timeout time.Duration) (*held, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	h := &held{conn: conn, r: bufio.NewReaderSize(conn, maxLine)}
	h.rec.LocalPort = conn.LocalAddr().(*net.TCPAddr).Port
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	conn.SetReadDeadline(time.Now().Add(timeout))
	greeting, err := h.readLine()
	if err == nil && greeting == "" {
		err = errors.New("empty greeting")
	}
	if !stop() && err == nil {
		err = ctx.Err() // ended as the greeting came: the connection is closed
	}
	if err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("greeting: %w", err)
	}
	h.rec.Server = greeting
	return h, nil
}

// run exchanges a line every interval until ctx is done, the connection
// fails or count exchanges (if count > 0) are done, then closes it.
func (h *held) run(ctx context.Context, interval, timeout time.Duration, count int) {
	defer h.conn.Close()
	// Closing the connection is what cuts an exchange in flight short
	// when hold stops: during an outage it could wait for the whole
	// timeout.
	stop := context.AfterFunc(ctx, func() { h.conn.Close() })
	defer stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	for seq := 1; count == 0 || seq <= count; seq++ {
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
		if ctx.Err() != nil {
			return // select picks at random when both are ready
		}
		start := time.Now()
		err := h.exchange(seq, start.Add(timeout))
		end := time.Now()
		h.rec.LongestExchangeMS = max(h.rec.LongestExchangeMS, ms(end.Sub(start)))
		if err != nil {
			if ctx.Err() != nil {
				// Cut short by the end of hold, not by the target.
				h.rec.Waiting = true
				return
			}
			h.rec.Error, h.rec.Detail, h.rec.FailedAt = holdClass(err), err.Error(), &end
			return
		}
		h.rec.Exchanges++
		h.rec.LastAnswer = &end
		pause.Reset(interval)
	}
}

// errMoved is an answer that names another server than the greeting did:
// the connection now reaches a server it was not opened to.
var errMoved = errors.New("answer from another server")

// exchange sends "seq N" and checks that the answer is "SERVER seq N",
// SERVER being the name the connection was greeted with.
func (h *held) exchange(seq int, deadline time.Time) error {
	h.conn.SetDeadline(deadline)
	line := "seq " + strconv.Itoa(seq)
	if _, err := io.WriteString(h.conn, line+"\n"); err != nil {
		return err
	}
	answer, err := h.readLine()
	if err != nil {
		return err
	}
	if answer == h.rec.Server+" "+line {
		return nil
	}
	// The echo protocol is "NAME LINE", and a name has no space.
	if name, rest, _ := strings.Cut(answer, " "); rest == line {
		return fmt.Errorf("%w: %q answered %q, the connection was opened to %q", errMoved, name, line, h.rec.Server)
	}
	return fmt.Errorf("answer %q to %q, want %q", answer, line, h.rec.Server+" "+line)
}

// readLine reads one line of at most maxLine bytes and returns it without
// its newline.
func (h *held) readLine() (string, error) {
	line, err := h.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", fmt.Errorf("line longer than %d bytes", maxLine)
		}
		return "", err
	}
	return strings.TrimSuffix(string(line), "\n"), nil
}

// holdClass names a connection's failure: moved, or probe's classes.
func holdClass(err error) string {
	if errors.Is(err, errMoved) {
		return "moved"
	}
	return classify(err)
}
