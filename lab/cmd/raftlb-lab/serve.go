package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/raftlb/raftlb/internal/cli"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	name := fs.String("name", "", "the answer, normally the node's name (required)")
	port := fs.Int("port", 0, "TCP port to listen on (required)")
	// 0.0.0.0 rather than the VIP: in LVS-DR the VIP sits on lo of every
	// real server, and a wildcard listener accepts connections to it
	// whether or not it has been added yet.
	addr := fs.String("addr", "0.0.0.0", "address to listen on")
	// --http answers HTTP GETs with the content of --body-file, read anew
	// for every request, so a scenario can change it under a running
	// health check (a digest that stops matching).
	httpMode := fs.Bool("http", false, "answer HTTP requests instead of writing the name")
	bodyFile := fs.String("body-file", "", "with --http: file whose content is the response body")
	// --echo keeps each connection open, for hold: long-lived connections
	// whose every answer names the server they reached.
	echoMode := fs.Bool("echo", false, `keep each connection open and answer every line with "NAME LINE"`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" {
		return fmt.Errorf("%w: --name is required", cli.ErrUsage)
	}
	if *port <= 0 || *port > 65535 {
		return fmt.Errorf("%w: --port must be 1-65535, got %d", cli.ErrUsage, *port)
	}
	if net.ParseIP(*addr) == nil {
		return fmt.Errorf("%w: --addr %q is not an IP address", cli.ErrUsage, *addr)
	}
	if *echoMode && *httpMode {
		return fmt.Errorf("%w: --echo and --http exclude each other: one service per port", cli.ErrUsage)
	}

	ln, err := net.Listen("tcp", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		return err
	}
	// Lab tests wait for this line before they send traffic.
	fmt.Fprintf(stdout, "serving %s on %s\n", *name, ln.Addr())
	if *httpMode {
		if *bodyFile == "" {
			return fmt.Errorf("%w: --http needs --body-file", cli.ErrUsage)
		}
		return serveHTTP(ctx, ln, *bodyFile)
	}
	if *echoMode {
		return serveEcho(ctx, ln, *name)
	}
	return serve(ctx, ln, *name)
}

// serveHTTP answers every GET with the current content of bodyFile.
func serveHTTP(ctx context.Context, ln net.Listener, bodyFile string) error {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := os.ReadFile(bodyFile)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
			w.Write(body)
		}),
		ReadHeaderTimeout: 2 * time.Second,
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serve answers every connection on ln with name and a newline, then closes
// it, until ctx is done. Closing first puts TIME_WAIT on the server, so the
// probing client can open thousands of connections without running out of
// ports.
func serve(ctx context.Context, ln net.Listener, name string) error {
	greeting := []byte(name + "\n")
	return accept(ctx, ln, func(_ context.Context, c net.Conn) {
		defer c.Close()
		c.SetWriteDeadline(time.Now().Add(writeLimit))
		c.Write(greeting)
	})
}

// serveEcho greets every connection on ln with name and a newline, as
// serve does, then keeps it open and answers every line the client sends
// with "NAME LINE\n" until the client closes it or ctx is done: a
// long-lived connection that says, with each answer, which server it
// reached.
func serveEcho(ctx context.Context, ln net.Listener, name string) error {
	return accept(ctx, ln, func(ctx context.Context, c net.Conn) {
		defer c.Close()
		stop := context.AfterFunc(ctx, func() { c.Close() })
		defer stop()
		c.SetWriteDeadline(time.Now().Add(writeLimit))
		if _, err := c.Write([]byte(name + "\n")); err != nil {
			return
		}
		// A line longer than the buffer (maxLine) ends the connection:
		// ReadSlice fails with bufio.ErrBufferFull.
		r := bufio.NewReaderSize(c, maxLine)
		for {
			line, err := r.ReadSlice('\n')
			if err != nil {
				return
			}
			c.SetWriteDeadline(time.Now().Add(writeLimit))
			if _, err := c.Write(append([]byte(name+" "), line...)); err != nil {
				return
			}
		}
	})
}

const (
	// writeLimit bounds one write to a client that stopped reading.
	writeLimit = 2 * time.Second
	// maxLine bounds a line of the echo protocol, newline included, on
	// both sides.
	maxLine = 256
)

// accept hands every connection on ln to handle, in a goroutine of its
// own, until ctx is done or ln fails; then it cancels the context the
// handlers were given and waits for them to return.
func accept(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn)) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			// Transient (e.g. EMFILE): keep serving, as a real service would.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Go(func() { handle(ctx, c) })
	}
}
