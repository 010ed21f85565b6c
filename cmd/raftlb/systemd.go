package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/raftlb/raftlb/cluster"
)

// systemd readiness and watchdog (Type=notify): READY=1 once the agent
// serves, STATUS= with the node's role, WATCHDOG=1 while the director
// beats, STOPPING=1 at the start of a stop. Without NOTIFY_SOCKET (not
// started by systemd) every call is a no-op.

// readyTimeout bounds how long a node that knows no DC yet (waiting to be
// joined, or for its peers) holds back READY=1: systemd would fail the
// start otherwise. Its STATUS says what it waits for.
const readyTimeout = 30 * time.Second

// notifier speaks the sd_notify protocol for the agent.
type notifier struct {
	logger *slog.Logger
}

func (n notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		n.logger.Warn("telling systemd failed", "state", state, "err", err)
	}
}

// statusLine is what systemctl status shows for the agent.
func statusLine(v cluster.View) string {
	online := 0
	for _, nd := range v.Nodes {
		if nd.Status == "online" {
			online++
		}
	}
	q := "no quorum"
	if v.Quorum {
		q = "quorum"
	}
	switch {
	case v.IsLeader:
		return fmt.Sprintf("DC (term %d), %d/%d nodes online, %s", v.Term, online, len(v.Nodes), q)
	case v.DC != "":
		return fmt.Sprintf("member, DC %s (term %d), %d/%d nodes online, %s", v.DC, v.Term, online, len(v.Nodes), q)
	}
	return fmt.Sprintf("no DC known: waiting to join a cluster or for its peers, %s", q)
}

// run reports READY=1 once the API serves (the caller starts run then),
// the director has cleaned up after the last run (startedUp) and a DC is
// known (or readyTimeout after the clean-up), then STATUS= every few
// seconds and WATCHDOG=1 while beat is recent, until ctx ends.
func (n notifier) run(ctx context.Context, startedUp <-chan struct{}, view func() cluster.View, beat func() time.Time) {
	n.send("STATUS=starting: cleaning up after the last run (its resources, VIPs and IPVS rules)")
	select {
	case <-ctx.Done():
		return
	case <-startedUp:
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		v := view()
		if v.DC != "" || time.Now().After(deadline) {
			n.send(daemon.SdNotifyReady + "\nSTATUS=" + statusLine(v))
			break
		}
		n.send("STATUS=" + statusLine(v))
		select {
		case <-ctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	every := 5 * time.Second
	wd, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		n.logger.Warn("the systemd watchdog setting is unreadable; not feeding it", "err", err)
	}
	// Fed at a third of systemd's interval, and only while the director
	// beat within half of it: a hung agent is restarted.
	if wd > 0 {
		every = min(every, wd/3)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if wd > 0 {
			if since := time.Since(beat()); since < wd/2 {
				n.send(daemon.SdNotifyWatchdog)
			} else {
				n.logger.Error("the director has not shown progress; not feeding the systemd watchdog, which restarts the agent", "since", since.Round(time.Millisecond), "watchdog", wd)
			}
		}
		if s := statusLine(view()); s != last {
			n.send("STATUS=" + s)
			last = s
		}
	}
}
