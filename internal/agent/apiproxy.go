package agent

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"

	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/upgrade"
)

// apiProxy forwards requests that arrived through the tunnel to the API
// server. In service-account-token mode the caller's bearer token goes
// through untouched and the agent adds no identity of its own: the API
// server authenticates the caller, and a wrong token gets its own 401.
type apiProxy struct {
	target *url.URL
	logger *slog.Logger
	proxy  *httputil.ReverseProxy
}

// newAPIProxy builds the proxy from the agent's view of the API server. Only
// the server address and its CA are used: credentials in cfg are dropped.
func newAPIProxy(cfg *rest.Config, logger *slog.Logger) (*apiProxy, error) {
	anon := rest.AnonymousClientConfig(cfg)
	target, err := url.Parse(anon.Host)
	if err != nil || target.Host == "" {
		return nil, fmt.Errorf("API server address %q is not a URL", anon.Host)
	}
	h2, err := rest.TransportFor(anon)
	if err != nil {
		return nil, fmt.Errorf("transport to the API server: %w", err)
	}
	h1cfg := rest.CopyConfig(anon)
	h1cfg.TLSClientConfig.NextProtos = []string{"http/1.1"}
	h1, err := rest.TransportFor(h1cfg)
	if err != nil {
		return nil, fmt.Errorf("transport to the API server: %w", err)
	}
	p := &apiProxy{target: target, logger: logger}
	// Ordinary requests share HTTP/2 connections to the API server; upgrades
	// (exec, attach, port-forward) take HTTP/1.1 ones (package upgrade).
	p.proxy = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     upgrade.Split(h2, h1),
		FlushInterval: -1, // watches and logs -f stream as the API server writes
		ErrorHandler:  p.error,
	}
	return p, nil
}

func (p *apiProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := authheader.Bearer(r.Header.Get("Authorization")); !ok {
		apistatus.Write(w, http.StatusUnauthorized,
			"no credentials reached the cluster: pass a service-account token (tether proxy --token) or sign in")
		return
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *apiProxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.target)
	pr.Out.Host = p.target.Host
	authheader.StripImpersonation(pr.Out.Header)
	// The hub is not the client: do not tell the API server otherwise.
	pr.Out.Header.Del("X-Forwarded-For")
	pr.Out.Header.Del("X-Forwarded-Host")
	pr.Out.Header.Del("X-Forwarded-Proto")
}

func (p *apiProxy) error(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the caller went away; nothing to answer
	}
	p.logger.Warn("api server request failed", "path", r.URL.Path, "err", err)
	apistatus.Write(w, http.StatusBadGateway, fmt.Sprintf("the agent could not reach the cluster's API server: %v", err))
}
