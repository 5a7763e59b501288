package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/copybuf"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/tunnel"
	"tether.dev/tether/internal/upgrade"
)

// apiProxy forwards requests that arrived through the tunnel to the API
// server, in one of two modes the hub's signed assertion chooses:
//
//   - token: the caller's bearer token (a service-account token) goes
//     through untouched and the agent adds no identity of its own; the API
//     server authenticates the caller, and a wrong token gets its own 401.
//   - impersonate: the caller signed in at the hub; the agent drops the
//     caller's Authorization and sends the request with its own credentials,
//     impersonating the assertion's subject and groups.
//
// Every client-supplied Impersonate-* header is removed in both.
type apiProxy struct {
	target      *url.URL
	logger      *slog.Logger
	token       *httputil.ReverseProxy // anonymous transports: the caller's token only
	impersonate *httputil.ReverseProxy // the agent's own credentials
	// tokenStream and impersonateStream are the same with small copy
	// buffers, for watches and followed logs (copybuf.Streaming).
	tokenStream, impersonateStream *httputil.ReverseProxy
}

// newAPIProxy builds the proxy from the agent's view of the API server.
func newAPIProxy(cfg *rest.Config, logger *slog.Logger) (*apiProxy, error) {
	target, err := url.Parse(cfg.Host)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("API server address %q is not a URL", cfg.Host)
	}
	p := &apiProxy{target: target, logger: logger}
	anon, err := splitTransport(rest.AnonymousClientConfig(cfg))
	if err != nil {
		return nil, err
	}
	own, err := splitTransport(cfg)
	if err != nil {
		return nil, err
	}
	p.token, p.tokenStream = p.reverseProxy(anon)
	p.impersonate, p.impersonateStream = p.reverseProxy(own)
	return p, nil
}

// splitTransport makes a transport for cfg that sends ordinary requests over
// shared HTTP/2 connections and upgrades (exec, attach, port-forward) over
// HTTP/1.1 ones (package upgrade).
func splitTransport(cfg *rest.Config) (http.RoundTripper, error) {
	h2cfg := rest.CopyConfig(cfg)
	h2cfg.Wrap(boundHTTP2Buffers)
	h2, err := rest.TransportFor(h2cfg)
	if err != nil {
		return nil, fmt.Errorf("transport to the API server: %w", err)
	}
	h1cfg := rest.CopyConfig(cfg)
	h1cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h1, err := rest.TransportFor(h1cfg)
	if err != nil {
		return nil, fmt.Errorf("transport to the API server: %w", err)
	}
	return upgrade.Split(h2, h1), nil
}

// The agent's receive buffers toward the API server, per stream and per
// connection. Go's HTTP/2 client would otherwise buffer up to 4 MiB per
// stream and 1 GiB per connection of what the API server sends faster than
// the tunnel takes it: a few large downloads at once grew the agent by
// tens of megabytes. A stream's data can move through the tunnel no faster
// than the tunnel's window (tunnel.DefaultMaxStreamWindow) allows anyway.
const (
	apiStreamBuffer     = tunnel.DefaultMaxStreamWindow
	apiConnectionBuffer = 8 * apiStreamBuffer
)

// boundHTTP2Buffers sets the receive buffers of client-go's new transport
// (not yet used: it is wrapped as it is made).
func boundHTTP2Buffers(rt http.RoundTripper) http.RoundTripper {
	if t, ok := rt.(*http.Transport); ok && t.HTTP2 == nil {
		t.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerStream: apiStreamBuffer, MaxReceiveBufferPerConnection: apiConnectionBuffer}
	}
	return rt
}

// reverseProxy returns the proxy through rt, and the same with small copy
// buffers for long-lived streams.
func (p *apiProxy) reverseProxy(rt http.RoundTripper) (*httputil.ReverseProxy, *httputil.ReverseProxy) {
	rp := &httputil.ReverseProxy{
		Rewrite:   p.rewrite,
		Transport: rt,
		// FlushInterval 0: a response of unknown length (watch, logs -f) is
		// flushed after every write anyway; one of known length goes out in
		// full TLS records rather than a flush per 32 KiB read.
		ErrorHandler: p.error,
		BufferPool:   copybuf.Large,
	}
	stream := *rp
	stream.BufferPool = copybuf.Small
	return rp, &stream
}

// forCluster is the handler for one enrolled cluster: it admits only
// requests carrying a valid assertion from the hub for that cluster.
func (p *apiProxy) forCluster(cluster string, v *identity.AssertionVerifier) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, err := v.Verify(r.Header.Get(identity.AssertionHeader), cluster, time.Now())
		r.Header.Del(identity.AssertionHeader)
		if err != nil {
			p.logger.Warn("request without a valid hub assertion refused", "cluster", cluster, "err", err)
			apistatus.Write(w, http.StatusUnauthorized, "the agent accepts only requests the hub vouched for: "+err.Error())
			return
		}
		switch a.Mode {
		case identity.ModeToken:
			if _, ok := authheader.Bearer(r.Header.Get("Authorization")); !ok {
				apistatus.Write(w, http.StatusUnauthorized,
					"no credentials reached the cluster: pass a service-account token (tether proxy --token) or sign in")
				return
			}
			proxy := p.token
			if copybuf.Streaming(r) {
				proxy = p.tokenStream
			}
			proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), assertionKey{}, a)))
		case identity.ModeImpersonate:
			proxy := p.impersonate
			if copybuf.Streaming(r) {
				proxy = p.impersonateStream
			}
			proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), assertionKey{}, a)))
		default:
			apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("unknown assertion mode %q; upgrade the agent", a.Mode))
		}
	})
}

// assertionKey carries the verified assertion to rewrite.
type assertionKey struct{}

func (p *apiProxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.target)
	pr.Out.Host = p.target.Host
	// Hop-by-hop headers (including any named in Connection) are already
	// gone; what follows cannot be undone by a client's Connection header.
	authheader.StripImpersonation(pr.Out.Header)
	for name := range pr.Out.Header {
		// X-Remote-*: the front-proxy identity headers of the API server's
		// request-header authentication, never a client's to send.
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "X-Remote-") {
			delete(pr.Out.Header, name)
		}
	}
	// The API server records these as the request's source in its audit
	// log (X-Real-Ip too): a client must not choose what it says.
	pr.Out.Header.Del("X-Forwarded-For")
	pr.Out.Header.Del("X-Forwarded-Host")
	pr.Out.Header.Del("X-Forwarded-Proto")
	pr.Out.Header.Del("X-Real-Ip")
	a, _ := pr.In.Context().Value(assertionKey{}).(identity.Assertion)
	if a.Mode == identity.ModeToken {
		// Exactly the token forCluster checked, in the one form the API
		// server reads: "Bearer  TOKEN" (two spaces) would otherwise reach
		// it as no token at all, an anonymous request.
		token, _ := authheader.Bearer(pr.In.Header.Get("Authorization"))
		pr.Out.Header.Set("Authorization", "Bearer "+token)
	}
	if a.Mode == identity.ModeImpersonate {
		pr.Out.Header.Del("Authorization") // the transport adds the agent's own
		pr.Out.Header.Set("Impersonate-User", a.Subject)
		for _, g := range a.Groups {
			pr.Out.Header.Add("Impersonate-Group", g)
		}
	}
}

func (p *apiProxy) error(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the caller went away; nothing to answer
	}
	p.logger.Warn("api server request failed", "path", r.URL.Path, "err", err)
	apistatus.Write(w, http.StatusBadGateway, fmt.Sprintf("the agent could not reach the cluster's API server: %v", err))
}
