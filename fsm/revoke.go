package fsm

import (
	"fmt"
	"slices"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// Revocation makes the certificates of a removed node useless: a peer
// certificate is refused when its serial is listed, or when it names the
// node and was issued (NotBefore) before IssuedBefore. The second rule
// covers certificates the DC never saw (a rotated one, say); a certificate
// issued after the removal lets the node join again.
type Revocation struct {
	Node string `json:"node"`
	// Serials are the certificate serials (hex) the DC saw the node use.
	Serials []string `json:"serials,omitempty"`
	// IssuedBefore: a certificate for Node with an earlier NotBefore is
	// refused. Certificates are backdated a few minutes for clock skew, so
	// the DC sets it a little before the removal.
	IssuedBefore time.Time `json:"issued_before"`
	// At is when the node was removed.
	At time.Time `json:"at"`
}

// MaxSerialsPerRevocation bounds a record: a node rotating its
// certificate now and then uses a handful.
const MaxSerialsPerRevocation = 16

func (r Revocation) validate() []spec.Problem {
	var ps []spec.Problem
	if err := spec.ValidateNodeName(r.Node); err != nil {
		ps = append(ps, spec.Problem{Path: "revoke.node", Message: err.Error()})
	}
	if r.IssuedBefore.IsZero() || r.At.IsZero() {
		ps = append(ps, spec.Problem{Path: "revoke", Message: "issued_before and at are required"})
	}
	if len(r.Serials) > MaxSerialsPerRevocation {
		ps = append(ps, spec.Problem{Path: "revoke.serials", Message: fmt.Sprintf("%d serials, at most %d", len(r.Serials), MaxSerialsPerRevocation)})
	}
	for i, s := range r.Serials {
		if !validSerial(s) {
			ps = append(ps, spec.Problem{Path: fmt.Sprintf("revoke.serials[%d]", i), Message: fmt.Sprintf("%q is not a certificate serial in lower-case hex", s)})
		}
	}
	return ps
}

// validSerial accepts what big.Int.Text(16) writes for a positive serial
// of at most 20 bytes (RFC 5280).
func validSerial(s string) bool {
	if s == "" || len(s) > 40 || s[0] == '0' {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func (r Revocation) canonical() Revocation {
	r.IssuedBefore, r.At = canonicalTime(r.IssuedBefore), canonicalTime(r.At)
	r.Serials = slices.Compact(slices.Sorted(slices.Values(r.Serials)))
	return r
}

// Revoked returns the revocation that refuses a certificate naming node,
// with this serial (hex) and NotBefore; false when it is not revoked.
func (f *FSM) Revoked(node, serial string, notBefore time.Time) (Revocation, bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.state.revoked(node, serial, notBefore)
}

func (s State) revoked(node, serial string, notBefore time.Time) (Revocation, bool) {
	for _, r := range s.Revoked {
		if slices.Contains(r.Serials, serial) || (r.Node == node && notBefore.Before(r.IssuedBefore)) {
			return r, true
		}
	}
	return Revocation{}, false
}

// revoke records r, replacing an older record for the same node (its
// serials are kept: they stay revoked).
func (f *FSM) revoke(r Revocation) {
	for i, old := range f.state.Revoked {
		if old.Node == r.Node {
			r.Serials = slices.Compact(slices.Sorted(slices.Values(append(old.Serials, r.Serials...))))
			if len(r.Serials) > MaxSerialsPerRevocation {
				r.Serials = r.Serials[len(r.Serials)-MaxSerialsPerRevocation:]
			}
			if r.IssuedBefore.Before(old.IssuedBefore) {
				r.IssuedBefore = old.IssuedBefore
			}
			f.state.Revoked[i] = r
			return
		}
	}
	f.state.Revoked = append(f.state.Revoked, r)
	slices.SortFunc(f.state.Revoked, func(a, b Revocation) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
}
