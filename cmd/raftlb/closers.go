package main

import (
	"context"
	"errors"
	"log/slog"
)

// closers is the agent's stack of closers. The start pushes one for each
// thing it starts, at its place in the shutdown order; a stop, or a start
// that fails half-way, runs those pushed so far, the last pushed first.
type closers struct {
	logger *slog.Logger
	stack  []closer
}

type closer struct {
	name  string // logged at debug level as it runs
	close func(context.Context) error
}

func (c *closers) push(name string, close func(context.Context) error) {
	c.stack = append(c.stack, closer{name: name, close: close})
}

// close runs the closers in the reverse of the order they were pushed in,
// each once (it empties the stack), and returns their errors joined. ctx
// bounds the closers that wait for requests in flight.
func (c *closers) close(ctx context.Context) error {
	var errs []error
	for len(c.stack) > 0 {
		last := c.stack[len(c.stack)-1]
		c.stack = c.stack[:len(c.stack)-1]
		c.logger.Debug("closing", "closer", last.name)
		if err := last.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
