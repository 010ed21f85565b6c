package procrun

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Allow is where a node lets the spec's programs of one kind come from:
// the spec names a program, the node's own configuration decides whether
// it may run, so whoever can change the spec cannot widen that. A program
// may run when it is directly in one of Dirs (not a subdirectory), and it
// (after symbolic links) and that directory are owned by root or the
// agent's user and writable by their owner only, as keepalived's
// enable_script_security: whoever can write them would run code as the
// agent. The file can still change between the check and the run; the
// checks keep out whoever cannot write as root.
type Allow struct {
	// What names the kind, for errors ("exec checks"); Flag the agent
	// setting that lists the directories ("--exec-dir").
	What, Flag string
	// Dirs are absolute, clean directory paths; none allows nothing.
	Dirs []string
	// Prefix, when set, is how the program's name must start ("fence_",
	// as Pacemaker finds fence agents).
	Prefix string
}

// CheckDirs checks a list of allowed directories from the agent's
// configuration: absolute, clean, existing directories.
func CheckDirs(flag string, dirs []string) error {
	for _, d := range dirs {
		if !filepath.IsAbs(d) || filepath.Clean(d) != d {
			return fmt.Errorf("%s %q: want a clean absolute path", flag, d)
		}
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("%s %s: %w", flag, d, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s %s is not a directory", flag, d)
		}
	}
	return nil
}

// safeOwner refuses a file or directory that someone other than root or
// the agent's user owns or may write.
func safeOwner(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %04o): whoever can write it would run code as the agent", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, neither root nor the agent's user", path, st.Uid)
	}
	return nil
}

// Check says why path may not run here, or nil.
func (a Allow) Check(path string) error {
	if !filepath.IsAbs(path) || filepath.Clean(path) != path {
		return fmt.Errorf("%q is not a clean absolute path", path)
	}
	if a.Prefix != "" && !strings.HasPrefix(filepath.Base(path), a.Prefix) {
		return fmt.Errorf("%s: %s must be named %s*", path, a.What, a.Prefix)
	}
	if len(a.Dirs) == 0 {
		return fmt.Errorf("%s: this node allows no %s (the agent's %s DIR names a directory they may come from)", path, a.What, a.Flag)
	}
	if !slices.Contains(a.Dirs, filepath.Dir(path)) {
		return fmt.Errorf("%s is not in a directory this node allows for %s (%s %s)", path, a.What, a.Flag, strings.Join(a.Dirs, ", "))
	}
	if err := safeOwner(filepath.Dir(path)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	fi, err := os.Stat(target)
	switch {
	case err != nil:
		return fmt.Errorf("%s: %w", path, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s is not an executable file", path)
	}
	if err := safeOwner(target); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// RunnableBy says why user (its uid, with only its primary group) could not
// run path: every directory on the way must let it search, the file let it
// read and execute (a script is read by its interpreter). flag names the
// setting that chose the user, for the error.
func RunnableBy(path string, user *syscall.Credential, flag string) error {
	uid, gid := user.Uid, user.Gid
	allowed := func(fi os.FileInfo, bits os.FileMode) bool {
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return false
		}
		m := fi.Mode().Perm()
		switch {
		case st.Uid == uid:
			return m&(bits<<6) == bits<<6
		case st.Gid == gid:
			return m&(bits<<3) == bits<<3
		}
		return m&bits == bits
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil {
			return err
		}
		if !allowed(fi, 0o1) {
			return fmt.Errorf("%s: uid %d (the agent's %s) cannot enter directory %s", path, uid, flag, dir)
		}
		if dir == "/" {
			break
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !allowed(fi, 0o5) {
		return fmt.Errorf("%s: uid %d (the agent's %s) cannot read and execute it", path, uid, flag)
	}
	return nil
}
