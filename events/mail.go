package events

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/smtp"
	"slices"
	"strings"
	"time"
)

// Mail sends the events as mail through an SMTP relay, as keepalived's
// smtp_alert and ldirectord's emailalert do, coalesced: the first event
// opens a window, and everything published within it goes in one mail, so
// a flapping server sends one mail, not a hundred.
type Mail struct {
	Relay string // host:port
	From  string
	To    []string
	// Window is how long events gather before a mail goes out.
	Window time.Duration
	// Timeout bounds one delivery; a relay that fails is retried with the
	// events kept (at most MaxMailEvents) and never blocks anything else.
	Timeout time.Duration

	// after is the clock of the windows and retries: time.After when nil;
	// a test ends a window when it chooses.
	after func(time.Duration) <-chan time.Time
}

// The defaults of a Mail, and the bound on the events one mail holds.
const (
	DefaultMailWindow  = 30 * time.Second
	DefaultMailTimeout = 20 * time.Second
	MaxMailEvents      = 500
	maxMailRetry       = 5 * time.Minute
)

// CheckMail checks a mail setting of the agent's configuration.
func CheckMail(m Mail) error {
	if _, _, err := net.SplitHostPort(m.Relay); err != nil {
		return fmt.Errorf("SMTP relay %q: want HOST:PORT", m.Relay)
	}
	if len(m.To) == 0 || m.From == "" {
		return fmt.Errorf("mail alerts need a sender and at least one recipient")
	}
	for _, a := range append([]string{m.From}, m.To...) {
		if strings.ContainsAny(a, "\r\n<>,") || !strings.Contains(a, "@") {
			return fmt.Errorf("mail address %q: want user@host", a)
		}
	}
	return nil
}

// RunMail mails the events published on b from now on, until ctx ends.
func RunMail(ctx context.Context, b *Bus, m Mail, logger *slog.Logger) {
	if m.Window <= 0 {
		m.Window = DefaultMailWindow
	}
	if m.Timeout <= 0 {
		m.Timeout = DefaultMailTimeout
	}
	if m.after == nil {
		m.after = time.After
	}
	log := logger.With("smtp_relay", m.Relay)
	sub, _ := b.Subscribe(MaxMailEvents)
	defer sub.Close()
	var (
		batch   []Event
		lost    int
		retry   = m.Window
		window  <-chan time.Time // nil while no window is open
		dropped uint64
	)
	for {
		select {
		case <-ctx.Done():
			// One last try with what is gathered (a graceful stop's events).
			for len(sub.C()) > 0 {
				batch = append(batch, <-sub.C())
			}
			if len(batch) > 0 {
				dctx, cancel := context.WithTimeout(context.Background(), DrainFor)
				if err := m.send(dctx, b.node, batch, lost); err != nil {
					log.Warn("mail alert not sent before the agent stopped", "events", len(batch), "err", err)
				}
				cancel()
			}
			return
		case e := <-sub.C():
			batch = append(batch, e)
			if len(batch) > MaxMailEvents {
				lost += len(batch) - MaxMailEvents
				batch = batch[len(batch)-MaxMailEvents:]
			}
			if window == nil {
				window = m.after(m.Window)
			}
		case <-window:
			if d := sub.Dropped(); d > dropped {
				lost += int(d - dropped)
				dropped = d
			}
			err := m.send(ctx, b.node, batch, lost)
			if err == nil {
				log.Info("mail alert sent", "events", len(batch), "to", strings.Join(m.To, ","))
				batch, lost, retry = nil, 0, m.Window
				window = nil
				continue
			}
			retry = min(2*retry, maxMailRetry)
			log.Warn("mail alert not sent; retrying with the events kept", "events", len(batch), "retry_in", retry, "err", err)
			window = m.after(retry)
		}
	}
}

// send delivers one mail of events.
func (m Mail) send(ctx context.Context, node string, events []Event, lost int) error {
	ctx, cancel := context.WithTimeout(ctx, m.Timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", m.Relay)
	if err != nil {
		return err
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host, _, _ := net.SplitHostPort(m.Relay)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return err
	}
	defer c.Close()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return err
	}
	for _, to := range m.To {
		if err := c.Rcpt(to); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := w.Write(message(node, m.From, m.To, events, lost)); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return c.Quit()
}

// message is the mail: a subject that says what kinds of event, a body
// with one line per event.
func message(node, from string, to []string, events []Event, lost int) []byte {
	var kinds []string
	for _, e := range events {
		if !slices.Contains(kinds, e.Type) {
			kinds = append(kinds, e.Type)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\n", from, strings.Join(to, ", "))
	fmt.Fprintf(&b, "Subject: raftlb %s: %d event(s): %s\r\n", node, len(events), strings.Join(kinds, ", "))
	fmt.Fprintf(&b, "Date: %s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", time.Now().Format(time.RFC1123Z))
	for _, e := range events {
		b.WriteString(Line(e) + "\r\n")
	}
	if lost > 0 {
		fmt.Fprintf(&b, "(%d more events were not kept)\r\n", lost)
	}
	return []byte(b.String())
}

// Line is an event in one line, as raftlb events prints it.
func Line(e Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", e.Time.UTC().Format(time.RFC3339), e.Node, e.Type)
	for _, kv := range []struct{ k, v string }{{"vip", e.VIP}, {"service", e.Service}, {"server", e.Server}, {"node", e.Target}} {
		if kv.v != "" {
			fmt.Fprintf(&b, " %s=%s", kv.k, kv.v)
		}
	}
	if e.Term != 0 {
		fmt.Fprintf(&b, " term=%d", e.Term)
	}
	fmt.Fprintf(&b, ": %s", e.Message)
	if e.Error != "" {
		fmt.Fprintf(&b, " (%s)", e.Error)
	}
	return b.String()
}
