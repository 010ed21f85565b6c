package lab

import (
	"slices"
	"testing"
)

func TestPanicsFindsCrashReports(t *testing.T) {
	log := `time=2026-12-01T12:00:00Z level=INFO msg="this node is now the DC" term=3
time=2026-12-01T12:00:01Z level=ERROR msg="a log line that mentions panic: in its text"
panic: fsm: cannot apply log entry 9 (term 3): unknown command type 12

goroutine 41 [running]:
fatal error: concurrent map writes
`
	want := []string{
		"panic: fsm: cannot apply log entry 9 (term 3): unknown command type 12",
		"fatal error: concurrent map writes",
	}
	if got := Panics(log); !slices.Equal(got, want) {
		t.Errorf("Panics: %q, want %q", got, want)
	}
	if got := Panics(`time=x level=INFO msg="healthy"` + "\n"); len(got) != 0 {
		t.Errorf("a healthy log: %q", got)
	}
}
