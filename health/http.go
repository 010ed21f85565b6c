package health

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/spec"
)

// MaxBody bounds how much of a response body is read. A health page is
// small; a server that sends more is failing the check, not filling our
// memory.
const MaxBody = 1 << 20

const userAgent = "raftlb-healthcheck"

// ErrBadURL marks a URL Genhash cannot fetch: not http or https, or no host.
var ErrBadURL = errors.New("bad URL")

// Digest returns the MD5 and SHA-256 digests of a response body as
// lowercase hex, as the health check compares them.
//
// The MD5 digest is the one keepalived's genhash prints and HTTP_GET's
// "digest" compares. In keepalived (keepalived/check/check_http.c,
// http_process_response, which `keepalived --genhash` shares with the
// checker since genhash/ was folded into keepalived in 2021; the older
// genhash/http.c, http_process_stream, did the same) the hash runs over
// the raw bytes after the "\r\n\r\n" that ends the headers, up to
// Content-Length when the header is present and to EOF otherwise. Chunked
// transfer coding is NOT decoded: with `--protocol 1.1` the chunk-size
// lines would be hashed too. By default genhash and the checker send
// HTTP/1.0 requests, to which a server never answers chunked, so the
// hashed bytes are exactly the entity body. Go's client de-chunks and we
// ask for no compression, so hashing the body it returns gives
// keepalived's digest for the same page. That is also `curl URL | md5sum`,
// as keepalived's check_genhash.c says.
func Digest(body []byte) (md5hex, sha256hex string) {
	m := md5.Sum(body)
	s := sha256.Sum256(body)
	return hex.EncodeToString(m[:]), hex.EncodeToString(s[:])
}

// Genhash fetches rawURL as the http and https checks do and returns the
// status and the body's digests, for an operator to paste into a spec
// (keepalived's genhash). The digests are computed whatever the status.
// serverName, when set, is the Host header and the TLS server name.
func Genhash(ctx context.Context, rawURL, serverName string, verifyTLS bool) (status int, md5hex, sha256hex string, err error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0, "", "", fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return 0, "", "", fmt.Errorf("%w: %q: scheme must be http or https", ErrBadURL, rawURL)
	}
	if u.Host == "" {
		return 0, "", "", fmt.Errorf("%w: %q has no host", ErrBadURL, rawURL)
	}
	client := newHTTPClient(serverName, verifyTLS, defaultDial(nil))
	status, body, err := fetch(ctx, client, u.String(), serverName, true)
	if err != nil {
		return status, "", "", err
	}
	md5hex, sha256hex = Digest(body)
	return status, md5hex, sha256hex, nil
}

// newHTTPClient returns the client every HTTP probe uses. Like keepalived,
// each probe opens a fresh connection (no keep-alive, so a probe tests
// accept(), not a pooled socket) and speaks HTTP/1.1 only; it ignores
// proxy settings from the environment (a probe must reach the real
// server itself), never follows redirects (a 301 is the answer, not a
// hop to somewhere else) and asks for no compression (the digest is of
// the body as served, as keepalived sees it).
func newHTTPClient(serverName string, verifyTLS bool, dial DialFunc) *http.Client {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	return &http.Client{
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: dial,
			TLSClientConfig: &tls.Config{
				// Empty: no SNI for an IP address, and verification
				// against the address the URL names.
				ServerName: serverName,
				// Real servers commonly have self-signed certificates;
				// keepalived's SSL_GET does not verify either.
				InsecureSkipVerify: !verifyTLS,
			},
			DisableKeepAlives:      true,
			DisableCompression:     true,
			MaxResponseHeaderBytes: 64 << 10,
			Protocols:              &protocols,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// fetch GETs rawURL. host, when set, replaces the Host header. A non-zero
// status means a response arrived, even if reading its body then failed;
// the body is read only when wantBody, and at most MaxBody bytes of it.
func fetch(ctx context.Context, client *http.Client, rawURL, host string, wantBody bool) (status int, body []byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return 0, nil, err
	}
	if host != "" {
		req.Host = host
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, netError(err)
	}
	defer resp.Body.Close()
	if !wantBody {
		return resp.StatusCode, nil, nil
	}
	body, err = io.ReadAll(io.LimitReader(resp.Body, MaxBody+1))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading body: %w", netError(err))
	}
	if len(body) > MaxBody {
		return resp.StatusCode, nil, fmt.Errorf("body exceeds %d bytes", MaxBody)
	}
	return resp.StatusCode, body, nil
}

// httpChecker is keepalived's HTTP_GET and SSL_GET, ldirectord's
// checktype=negotiate.
type httpChecker struct {
	scheme    string
	path      string
	host      string // Host header and TLS server name; empty: the real server's address
	expect    []int
	regex     *regexp.Regexp
	md5       []byte
	sha256    []byte
	client    *http.Client
	wantBody  bool
	wantCodes string // for the error message
}

func newHTTPChecker(hc spec.HealthCheck, dial DialFunc) (*httpChecker, error) {
	c := &httpChecker{
		scheme: "http",
		path:   hc.Path,
		host:   hc.ServerName,
		expect: slices.Clone(hc.ExpectStatus),
		client: newHTTPClient(hc.ServerName, hc.VerifyTLS, dial),
	}
	if hc.Type == spec.CheckHTTPS {
		c.scheme = "https"
	}
	if c.path == "" {
		c.path = spec.DefaultCheckPath
	}
	if len(c.expect) == 0 {
		c.expect = []int{spec.DefaultExpectStatus}
	}
	codes := make([]string, len(c.expect))
	for i, code := range c.expect {
		codes[i] = strconv.Itoa(code)
	}
	c.wantCodes = strings.Join(codes, " or ")
	if hc.BodyRegex != "" {
		re, err := regexp.Compile(hc.BodyRegex)
		if err != nil {
			return nil, fmt.Errorf("body_regex: %w", err)
		}
		c.regex = re
	}
	var err error
	if c.md5, err = decodeDigest("digest_md5", hc.DigestMD5, md5.Size); err != nil {
		return nil, err
	}
	if c.sha256, err = decodeDigest("digest_sha256", hc.DigestSHA256, sha256.Size); err != nil {
		return nil, err
	}
	c.wantBody = c.regex != nil || c.md5 != nil || c.sha256 != nil
	return c, nil
}

func decodeDigest(name, s string, size int) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != size {
		return nil, fmt.Errorf("%s: must be %d hexadecimal digits", name, 2*size)
	}
	return b, nil
}

func (c *httpChecker) Check(ctx context.Context, t Target) error {
	rawURL := c.scheme + "://" + t.Addr.String() + c.path
	status, body, err := fetch(ctx, c.client, rawURL, c.host, c.wantBody)
	if status == 0 {
		return err
	}
	if !slices.Contains(c.expect, status) {
		return fmt.Errorf("status %d, want %s", status, c.wantCodes)
	}
	if err != nil {
		return err
	}
	if c.regex != nil && !c.regex.Match(body) {
		return fmt.Errorf("body does not match /%s/", c.regex)
	}
	if c.md5 != nil {
		if got := md5.Sum(body); !bytes.Equal(got[:], c.md5) {
			return fmt.Errorf("MD5 digest mismatch: got %x want %x", got[:], c.md5)
		}
	}
	if c.sha256 != nil {
		if got := sha256.Sum256(body); !bytes.Equal(got[:], c.sha256) {
			return fmt.Errorf("SHA-256 digest mismatch: got %x want %x", got[:], c.sha256)
		}
	}
	return nil
}
