package events

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/raftlb/raftlb/internal/procrun"
)

// Script is a notify script of the agent's configuration, keepalived's
// notify_master/notify_backup/notify_fault and notify_up/notify_down in
// one: it runs once per event, in order, with the event in its
// environment, off the DC's critical path.
type Script struct {
	// Argv is the program and its arguments, run without a shell.
	Argv []string
	// Timeout kills the script's whole process group.
	Timeout time.Duration
	// Queue bounds the events waiting for the script; what does not fit
	// is dropped, counted and logged.
	Queue int
}

// DefaultScriptTimeout and DefaultScriptQueue apply when a Script leaves
// them zero.
const (
	DefaultScriptTimeout = 10 * time.Second
	DefaultScriptQueue   = 64
)

// Env is the environment a notify script sees: PATH and the event's
// fields as RAFTLB_*; empty fields are left out.
func Env(e Event) []string {
	env := []string{procrun.DefaultPath,
		"RAFTLB_EVENT=" + e.Type,
		"RAFTLB_SEQ=" + strconv.FormatUint(e.Seq, 10),
		"RAFTLB_TIME=" + e.Time.UTC().Format(time.RFC3339Nano),
		"RAFTLB_NODE=" + e.Node,
		"RAFTLB_MESSAGE=" + e.Message,
	}
	for _, kv := range []struct{ k, v string }{
		{"RAFTLB_VIP", e.VIP}, {"RAFTLB_SERVICE", e.Service}, {"RAFTLB_SERVER", e.Server},
		{"RAFTLB_TARGET", e.Target}, {"RAFTLB_RESOURCE", e.Resource}, {"RAFTLB_ERROR", e.Error},
	} {
		if kv.v != "" {
			env = append(env, kv.k+"="+kv.v)
		}
	}
	if e.Term != 0 {
		env = append(env, "RAFTLB_TERM="+strconv.FormatUint(e.Term, 10))
	}
	return env
}

// DrainFor bounds how long a notify script or the mailer, once told to
// stop, goes on with the events already published (a graceful stop's
// dc_lost and vip_released).
const DrainFor = 3 * time.Second

// RunScript runs s for every event published on b from now on, until ctx
// ends; then it runs the events already queued, for at most DrainFor.
func RunScript(ctx context.Context, b *Bus, s Script, logger *slog.Logger) {
	if s.Timeout <= 0 {
		s.Timeout = DefaultScriptTimeout
	}
	if s.Queue <= 0 {
		s.Queue = DefaultScriptQueue
	}
	log := logger.With("notify", s.Argv[0])
	sub, _ := b.Subscribe(s.Queue)
	defer sub.Close()
	var dropped uint64
	// Scripts run under run: it ends DrainFor after ctx, so the script
	// running at the stop and those queued behind it still go.
	run, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	go func() {
		select {
		case <-ctx.Done():
		case <-run.Done():
			return
		}
		t := time.NewTimer(DrainFor)
		defer t.Stop()
		select {
		case <-t.C:
			cancelRun()
		case <-run.Done():
		}
	}()
	for {
		var e Event
		select {
		case e = <-sub.C():
		case <-ctx.Done():
			select {
			case e = <-sub.C():
			default:
				return // drained
			}
		}
		if d := sub.Dropped(); d > dropped {
			log.Warn("notify script falls behind: events dropped", "dropped", d-dropped, "dropped_total", d, "queue", s.Queue)
			dropped = d
		}
		r := procrun.Run(run, procrun.Cmd{Argv: s.Argv, Env: Env(e), Timeout: s.Timeout})
		switch {
		case run.Err() != nil:
			log.Warn("notify script stopped: the agent is stopping", "event", e.Type, "seq", e.Seq)
			return
		case r.Err != nil:
			log.Error("notify script could not run", "event", e.Type, "seq", e.Seq, "err", r.Err)
		case r.TimedOut:
			log.Error(fmt.Sprintf("notify script did not finish within %s; its process group was killed", s.Timeout), "event", e.Type, "seq", e.Seq)
		case r.ExitCode != 0:
			log.Warn("notify script failed", "event", e.Type, "seq", e.Seq, "exit", r.ExitCode, "stderr", r.StderrHead)
		}
	}
}
