// Package cli is what raftlb's two commands (raftlb and the lab's
// raftlb-lab) share: dispatch to a subcommand, flag sets that report
// instead of exiting, and one mapping from a command's error to its exit
// status (0; 2 for a usage mistake, as the flag package does; what an
// *ExitError says; 1 otherwise).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
)

// ErrUsage marks a command-line mistake: exit status 2.
var ErrUsage = errors.New("usage")

// ExitError ends a command with a chosen exit status (a monitoring
// check's), printing Err when it is not nil.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Command runs one subcommand with the arguments after its name.
type Command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// Run dispatches args[0] to its command and returns the exit status: the
// usage text for no command or help, "PROG: ERROR" on stderr for a
// failure.
func Run(ctx context.Context, prog, usage string, commands map[string]Command, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	name, rest := args[0], args[1:]
	switch name {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "%s: unknown command %q\n\n%s", prog, name, usage)
		return 2
	}
	err := cmd(ctx, rest, stdout, stderr)
	var exit *ExitError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &exit):
		if exit.Err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", prog, exit.Err)
		}
		return exit.Code
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 2
	default:
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
}

// NewFlagSet returns a flag set named name that reports errors to stderr
// instead of exiting, so Run decides the exit status.
func NewFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// ParseFlags parses args and turns flag's own errors into usage errors.
func ParseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}
