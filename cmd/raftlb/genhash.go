package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/raftlb/raftlb/health"
	"github.com/raftlb/raftlb/internal/cli"
)

// runGenhash prints the digests of a page for an http or https health
// check's digest_md5 and digest_sha256, as keepalived's genhash does for
// HTTP_GET. It fetches the page exactly as the check will.
func runGenhash(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("genhash", stderr)
	serverName := fs.String("server-name", "", "Host header and TLS server name (SNI), as the check's server_name")
	verifyTLS := fs.Bool("verify-tls", false, "verify the server's certificate, as the check's verify_tls")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *timeout <= 0 {
		return fmt.Errorf("%w: genhash takes one URL, e.g. raftlb genhash http://172.95.69.30:3128/index.html", cli.ErrUsage)
	}
	url := fs.Arg(0)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	status, md5hex, sha256hex, err := health.Genhash(ctx, url, *serverName, *verifyTLS)
	if errors.Is(err, health.ErrBadURL) {
		return fmt.Errorf("%w: %v", cli.ErrUsage, err)
	}
	if err != nil {
		return fmt.Errorf("genhash %s: %w", url, err)
	}
	// keepalived's genhash prints "MD5SUM = <hex>"; the status line says
	// which expect_status the digests go with.
	fmt.Fprintf(stdout, "HTTP status = %d\nMD5SUM = %s\nSHA256SUM = %s\n", status, md5hex, sha256hex)
	if status < 200 || status > 299 {
		fmt.Fprintf(stderr, "raftlb: warning: status %d: these are the digests of whatever page the server sent with it\n", status)
	}
	return nil
}
