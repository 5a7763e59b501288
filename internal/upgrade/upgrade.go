// Package upgrade routes HTTP/1.1 upgrade requests (SPDY/3.1 and WebSocket:
// kubectl exec, attach, port-forward, cp) to a transport that never
// negotiates HTTP/2. Upgrades do not exist in HTTP/2, and Go's transport
// falls back to HTTP/1.1 by itself only for WebSocket, so without this a
// SPDY upgrade over an HTTP/2 connection fails with "invalid Upgrade request
// header".
package upgrade

import (
	"crypto/tls"
	"net/http"

	"golang.org/x/net/http/httpguts"
)

// IsUpgrade reports whether h asks for a protocol upgrade (Connection:
// upgrade; such a request cannot travel over HTTP/2 either way).
func IsUpgrade(h http.Header) bool {
	return httpguts.HeaderValuesContainsToken(h["Connection"], "upgrade")
}

// Split returns a RoundTripper that sends upgrade requests through h1 and
// everything else through other.
func Split(other, h1 http.RoundTripper) http.RoundTripper {
	return split{other: other, h1: h1}
}

type split struct{ other, h1 http.RoundTripper }

func (s split) RoundTrip(r *http.Request) (*http.Response, error) {
	if IsUpgrade(r.Header) {
		return s.h1.RoundTrip(r)
	}
	return s.other.RoundTrip(r)
}

// HTTP1Only returns a clone of t that speaks only HTTP/1.1.
func HTTP1Only(t *http.Transport) *http.Transport {
	c := t.Clone()
	c.ForceAttemptHTTP2 = false
	c.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	if c.TLSClientConfig == nil {
		c.TLSClientConfig = &tls.Config{}
	}
	c.TLSClientConfig.NextProtos = []string{"http/1.1"}
	return c
}
