package testkit

import (
	"net"
	"path/filepath"
	"testing"
)

// NotifySocket listens on a unix datagram socket as systemd does for a
// Type=notify service, sets NOTIFY_SOCKET to it for the rest of the test
// (so an agent started now, in-process or as a child, speaks to it), and
// returns each datagram received, in order. The socket closes when the
// test ends.
func NotifySocket(t *testing.T) <-chan string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}
