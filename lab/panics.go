package lab

import "regexp"

// goCrash is how the Go runtime starts a crash report on stderr: an
// unrecovered panic, or a fatal error (a concurrent map write, running
// out of memory).
var goCrash = regexp.MustCompile(`(?m)^(panic: |fatal error: ).*$`)

// Panics returns the first line of every Go crash report in a process's
// output.
func Panics(output string) []string {
	return goCrash.FindAllString(output, -1)
}
