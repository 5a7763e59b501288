package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// ProxyFunc chooses the HTTP proxy for an outgoing request, as
// http.Transport.Proxy does; nil means direct. The CLI layer passes
// http.ProxyFromEnvironment when the hub should honour HTTPS_PROXY.
type ProxyFunc func(*http.Request) (*url.URL, error)

// newHTTPClient builds the client used toward an issuer or a groups
// endpoint: TLS 1.2+ with the given roots (system roots when caBundle is
// empty), every step under timeout, response bodies cut at maxBody, and no
// redirect that leaves the original scheme and host.
func newHTTPClient(caBundle []byte, timeout time.Duration, proxy ProxyFunc, maxBody int64) (*http.Client, *http.Transport, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(caBundle) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(caBundle) {
			return nil, nil, errors.New("CA bundle holds no PEM certificate")
		}
		tlsConfig.RootCAs = pool
	}
	transport := &http.Transport{
		Proxy:                 proxy,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   2,
		ForceAttemptHTTP2:     true,
	}
	client := &http.Client{
		Transport: boundedTransport{base: transport, max: maxBody},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			first := via[0].URL
			if len(via) >= 3 || req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
				return fmt.Errorf("refusing redirect from %s to %s", first.Host, req.URL.Redacted())
			}
			return nil
		},
	}
	return client, transport, nil
}

// boundedTransport cuts every response body at max bytes: a hostile or
// broken server cannot make the hub buffer without bound (go-oidc reads
// discovery documents with io.ReadAll).
type boundedTransport struct {
	base http.RoundTripper
	max  int64
}

func (t boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &boundedBody{rc: resp.Body, left: t.max, max: t.max}
	return resp, nil
}

type boundedBody struct {
	rc   io.ReadCloser
	left int64
	max  int64
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("response body larger than %d bytes", b.max)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// checkHTTPS accepts an absolute https URL without user info.
func checkHTTPS(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse URL: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" || u.User != nil {
		return nil, fmt.Errorf("URL %s is not an https URL with a host and no user info", quoteBounded(raw))
	}
	return u, nil
}
