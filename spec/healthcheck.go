package spec

import (
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// The floors on check intervals: a spec cannot make the DC probe (or, for
// exec checks, fork) faster than this, whatever it says.
const (
	MinCheckInterval     = 100 * time.Millisecond
	MinExecCheckInterval = time.Second
)

// MinInterval is the floor on the interval of a check of type typ.
func MinInterval(typ string) time.Duration {
	if typ == CheckExec {
		return MinExecCheckInterval
	}
	return MinCheckInterval
}

// healthCheck checks a health-check spec. It is stored and replicated
// before the director acts on it, so everything the checker will rely on is
// settled here: an exec command that cannot be run or a regular expression
// that does not compile is an operator error, not a failing real server.
func (v *validator) healthCheck(p string, hc HealthCheck) {
	switch {
	case hc.Interval <= 0:
		v.addf(p+".interval", "must be positive")
	case !v.proposal:
	case hc.Interval < MinCheckInterval:
		v.addf(p+".interval", "%s: want at least %s (every check of every real server runs this often on the DC)", hc.Interval, MinCheckInterval)
	case hc.Type == CheckExec && hc.Interval < MinExecCheckInterval:
		v.addf(p+".interval", "%s: an exec check starts a process each time; want at least %s", hc.Interval, MinExecCheckInterval)
	}
	switch {
	case hc.Timeout <= 0:
		v.addf(p+".timeout", "must be positive")
	case hc.Interval > 0 && hc.Timeout > hc.Interval:
		// A check that may outlive its interval would overlap the next one.
		v.addf(p+".timeout", "%s exceeds the interval %s", hc.Timeout, hc.Interval)
	}
	if hc.Rise < 1 {
		v.addf(p+".rise", "must be at least 1")
	}
	if hc.Fall < 1 {
		v.addf(p+".fall", "must be at least 1")
	}
	if hc.OnFail != OnFailRemove && hc.OnFail != OnFailQuiescent {
		v.addf(p+".on_fail", "unknown action %q (want remove or quiescent)", hc.OnFail)
	}

	switch hc.Type {
	case CheckTCP, CheckHTTP, CheckHTTPS, CheckExec:
	default:
		// Which of the other fields belong is unknowable; say only this.
		v.addf(p+".type", "unknown type %q (want tcp, http, https or exec)", hc.Type)
		return
	}
	if hc.Type == CheckHTTP || hc.Type == CheckHTTPS {
		v.httpCheck(p, hc)
	} else {
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"path", hc.Path != ""},
			{"expect_status", len(hc.ExpectStatus) > 0},
			{"body_regex", hc.BodyRegex != ""},
			{"digest_md5", hc.DigestMD5 != ""},
			{"digest_sha256", hc.DigestSHA256 != ""},
		} {
			if f.set {
				v.addf(p+"."+f.name, "only applies to http and https checks")
			}
		}
	}
	if hc.Type == CheckHTTPS {
		if hc.ServerName != "" {
			v.text(p+".server_name", hc.ServerName, 253)
		}
	} else {
		if hc.ServerName != "" {
			v.addf(p+".server_name", "only applies to https checks")
		}
		if hc.VerifyTLS {
			v.addf(p+".verify_tls", "only applies to https checks")
		}
	}
	if hc.Type == CheckExec {
		v.command(p+".command", hc.Command)
	} else if len(hc.Command) > 0 {
		v.addf(p+".command", "only applies to exec checks")
	}
}

func (v *validator) httpCheck(p string, hc HealthCheck) {
	switch {
	case !strings.HasPrefix(hc.Path, "/"):
		v.addf(p+".path", "%q must start with /", hc.Path)
	case !printable(hc.Path):
		// It goes into the request line verbatim.
		v.addf(p+".path", "%q contains whitespace, control characters or invalid UTF-8", hc.Path)
	}
	if len(hc.ExpectStatus) == 0 {
		v.addf(p+".expect_status", "at least one status code is required")
	}
	for i, code := range hc.ExpectStatus {
		if code < 100 || code > 599 {
			v.addf(fmt.Sprintf("%s.expect_status[%d]", p, i), "%d is not an HTTP status code (100..599)", code)
		}
	}
	if hc.BodyRegex != "" {
		if !utf8.ValidString(hc.BodyRegex) {
			v.addf(p+".body_regex", "is not valid UTF-8")
		} else if _, err := regexp.Compile(hc.BodyRegex); err != nil {
			v.addf(p+".body_regex", "%v", err)
		}
	}
	v.digest(p+".digest_md5", hc.DigestMD5, 16)
	v.digest(p+".digest_sha256", hc.DigestSHA256, 32)
}

// digest checks an optional hex digest of size bytes.
func (v *validator) digest(p, d string, size int) {
	if d == "" {
		return
	}
	if _, err := hex.DecodeString(d); err != nil || len(d) != 2*size {
		v.addf(p, "must be %d hexadecimal digits", 2*size)
	}
}

// command checks an exec check's argv. It is run without a shell, so
// command[0] must be an absolute path: a relative one would depend on the
// agent's working directory and PATH, which differ between nodes.
func (v *validator) command(p string, argv []string) {
	if len(argv) == 0 {
		v.addf(p, "exec checks need a command")
		return
	}
	if !strings.HasPrefix(argv[0], "/") {
		v.addf(p+"[0]", "%q must be an absolute path", argv[0])
	}
	for i, arg := range argv {
		if !utf8.ValidString(arg) || strings.ContainsRune(arg, 0) {
			v.addf(fmt.Sprintf("%s[%d]", p, i), "contains a NUL byte or invalid UTF-8")
		}
	}
}
