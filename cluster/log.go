package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// hclogAdapter lets hashicorp/raft log through slog. It is the one bridge
// between the two logging worlds; raft's own level filtering is delegated
// to the slog handler, and its chatter is mapped to levels on purpose
// (raftLevel).
type hclogAdapter struct {
	l       *slog.Logger
	name    string
	args    []any
	repeats *repeats
}

func newHCLog(l *slog.Logger, name string) hclog.Logger {
	return &hclogAdapter{l: l, name: name, repeats: newRepeats(time.Now)}
}

// perHeartbeat reports raft's messages that repeat on every heartbeat or
// append while a peer is down: said once per peer, then again at most
// every repeatEvery with the count, else at debug level.
func perHeartbeat(msg string) bool {
	switch msg {
	case "failed to heartbeat to", "failed to appendEntries to", "failed to contact", "failed to make requestVote RPC":
		return true
	}
	return false
}

// normalLevel is the level of raft's messages that a normal event causes,
// below raft's own: a leader that meets a newer term just handed over or
// was replaced.
func normalLevel(msg string) (slog.Level, bool) {
	if msg == "peer has newer term, stopping replication" {
		return slog.LevelInfo, true
	}
	return 0, false
}

// repeatEvery is how often a repeating message is said again.
const repeatEvery = time.Minute

// repeats counts repeating messages per peer.
type repeats struct {
	now  func() time.Time
	mu   sync.Mutex
	last map[string]time.Time // key: message and peer; when last said
	n    map[string]int       // how often since
}

func newRepeats(now func() time.Time) *repeats {
	return &repeats{now: now, last: map[string]time.Time{}, n: map[string]int{}}
}

// say reports whether key is to be said now, and how often it was not
// said since the last time.
func (r *repeats) say(key string) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if last, ok := r.last[key]; ok && now.Sub(last) < repeatEvery {
		r.n[key]++
		return false, 0
	}
	n := r.n[key]
	r.last[key], r.n[key] = now, 0
	return true, n
}

// peerOf is the peer a raft message is about.
func peerOf(args []any) string {
	for i := 0; i+1 < len(args); i += 2 {
		if k, ok := args[i].(string); ok && (k == "peer" || k == "server-id" || k == "target") {
			return fmt.Sprint(args[i+1])
		}
	}
	return ""
}

func hcToSlog(level hclog.Level) slog.Level {
	switch level {
	case hclog.Trace, hclog.Debug:
		return slog.LevelDebug
	case hclog.Info, hclog.NoLevel, hclog.DefaultLevel:
		return slog.LevelInfo
	case hclog.Warn:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (a *hclogAdapter) Log(level hclog.Level, msg string, args ...any) {
	all := append(append([]any{}, a.args...), args...)
	for i, v := range all {
		// hclog.Fmt values are a format string and its arguments.
		if f, ok := v.(hclog.Format); ok && len(f) > 0 {
			if format, ok := f[0].(string); ok {
				all[i] = fmt.Sprintf(format, f[1:]...)
			}
		}
	}
	lvl := hcToSlog(level)
	if l, ok := normalLevel(msg); ok {
		lvl = min(lvl, l)
	}
	if perHeartbeat(msg) && a.repeats != nil {
		say, suppressed := a.repeats.say(msg + "\x00" + peerOf(all))
		switch {
		case !say:
			lvl = slog.LevelDebug
		case suppressed > 0:
			all = append(all, "repeated", suppressed, "since", repeatEvery.String()+" ago (said again at most every minute)")
			lvl = min(lvl, slog.LevelWarn)
		default:
			lvl = min(lvl, slog.LevelWarn)
		}
	}
	a.l.Log(context.Background(), lvl, msg, all...)
}
func (a *hclogAdapter) Trace(msg string, args ...any) { a.Log(hclog.Trace, msg, args...) }
func (a *hclogAdapter) Debug(msg string, args ...any) { a.Log(hclog.Debug, msg, args...) }
func (a *hclogAdapter) Info(msg string, args ...any)  { a.Log(hclog.Info, msg, args...) }
func (a *hclogAdapter) Warn(msg string, args ...any)  { a.Log(hclog.Warn, msg, args...) }
func (a *hclogAdapter) Error(msg string, args ...any) { a.Log(hclog.Error, msg, args...) }
func (a *hclogAdapter) enabled(l slog.Level) bool {
	return a.l.Enabled(context.Background(), l)
}
func (a *hclogAdapter) IsTrace() bool        { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsDebug() bool        { return a.enabled(slog.LevelDebug) }
func (a *hclogAdapter) IsInfo() bool         { return a.enabled(slog.LevelInfo) }
func (a *hclogAdapter) IsWarn() bool         { return a.enabled(slog.LevelWarn) }
func (a *hclogAdapter) IsError() bool        { return a.enabled(slog.LevelError) }
func (a *hclogAdapter) ImpliedArgs() []any   { return a.args }
func (a *hclogAdapter) Name() string         { return a.name }
func (a *hclogAdapter) SetLevel(hclog.Level) {}
func (a *hclogAdapter) GetLevel() hclog.Level {
	if a.IsDebug() {
		return hclog.Debug
	}
	return hclog.Info
}
func (a *hclogAdapter) With(args ...any) hclog.Logger {
	return &hclogAdapter{l: a.l, name: a.name, args: append(append([]any{}, a.args...), args...), repeats: a.repeats}
}
func (a *hclogAdapter) Named(name string) hclog.Logger {
	n := name
	if a.name != "" {
		n = a.name + "." + name
	}
	return &hclogAdapter{l: a.l.With("subsystem", n), name: n, args: a.args, repeats: a.repeats}
}
func (a *hclogAdapter) ResetNamed(name string) hclog.Logger {
	return &hclogAdapter{l: a.l.With("subsystem", name), name: name, args: a.args, repeats: a.repeats}
}
func (a *hclogAdapter) StandardLogger(*hclog.StandardLoggerOptions) *log.Logger {
	return log.New(a.StandardWriter(nil), "", 0)
}
func (a *hclogAdapter) StandardWriter(*hclog.StandardLoggerOptions) io.Writer {
	return &levelWriter{l: a.l}
}

// levelWriter turns the "[LEVEL] subsystem: message" lines that memberlist
// writes through a *log.Logger into slog records at the matching level.
type levelWriter struct{ l *slog.Logger }

func (w *levelWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		msg := strings.TrimSpace(string(line))
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{
			"[TRACE]": slog.LevelDebug, "[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
			"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
		} {
			if rest, ok := strings.CutPrefix(msg, prefix); ok {
				level, msg = l, strings.TrimSpace(rest)
				break
			}
		}
		if msg != "" {
			w.l.Log(context.Background(), level, msg)
		}
	}
	return len(p), nil
}

func newStdLogger(l *slog.Logger) *log.Logger {
	return log.New(&levelWriter{l: l}, "", 0)
}
