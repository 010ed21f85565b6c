package fsm

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/raftlb/raftlb/spec"
)

// validator collects what is wrong with a command's payload, as
// spec.Spec.Validate does for a spec; its methods never stop at the first
// problem.
type validator struct {
	problems []spec.Problem
}

func (v *validator) addf(path, format string, args ...any) {
	v.problems = append(v.problems, spec.Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (v *validator) err() error {
	if len(v.problems) == 0 {
		return nil
	}
	return &spec.ValidationError{Problems: v.problems}
}

// unicastAddr applies the spec's rule for an address that names one host.
func (v *validator) unicastAddr(p string, a netip.Addr) {
	v.problems = append(v.problems, spec.HostAddrProblems(p, a)...)
}

// sentence checks a one-line free text (a reason): valid UTF-8, no
// control characters, at most maxLen bytes.
func (v *validator) sentence(p, s string, maxLen int) {
	switch {
	case len(s) > maxLen:
		v.addf(p, "longer than %d bytes", maxLen)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl):
		v.addf(p, "contains control characters or invalid UTF-8")
	}
}
