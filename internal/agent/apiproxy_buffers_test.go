package agent

import (
	"net/http"
	"net/url"
	"testing"

	"k8s.io/client-go/rest"
)

// TestHTTP2BuffersBounded shows that the transport client-go makes toward
// the API server is the one whose HTTP/2 receive buffers are bounded (so a
// client-go change that wraps it before us would be noticed).
func TestHTTP2BuffersBounded(t *testing.T) {
	var base *http.Transport
	cfg := &rest.Config{Host: "https://127.0.0.1:1", Proxy: func(*http.Request) (*url.URL, error) { return nil, nil }}
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		if t, ok := rt.(*http.Transport); ok && base == nil {
			base = t
		}
		return rt
	})
	if _, err := splitTransport(cfg); err != nil {
		t.Fatal(err)
	}
	if base == nil {
		t.Fatal("client-go did not hand an *http.Transport to WrapTransport")
	}
	if base.HTTP2 == nil || base.HTTP2.MaxReceiveBufferPerStream != apiStreamBuffer || base.HTTP2.MaxReceiveBufferPerConnection != apiConnectionBuffer {
		t.Errorf("HTTP/2 buffers of the API server transport: %+v, want %d per stream, %d per connection", base.HTTP2, apiStreamBuffer, apiConnectionBuffer)
	}
}
