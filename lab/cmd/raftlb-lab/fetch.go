package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/raftlb/raftlb/internal/cli"
)

// runFetch GETs a URL and prints the body: the lab scrapes an agent's
// /metrics from inside its namespace with it.
func runFetch(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fetch", stderr)
	url := fs.String("url", "", "the URL to GET")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *url == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: fetch needs --url URL", cli.ErrUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("%w: --url: %v", cli.ErrUsage, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", *url, resp.Status)
	}
	_, err = io.Copy(stdout, resp.Body)
	return err
}
