// Package localproxy is the loopback proxy behind `tether proxy`: kubectl
// talks HTTPS to 127.0.0.1, the proxy checks the caller's per-run local
// credential, swaps it for the real credential and forwards to the hub's
// gateway for one cluster.
//
//	kubectl ──HTTPS, local token──► 127.0.0.1:PORT ──HTTPS, real token──► hub /k8s/{group}/{cluster}/...
//
// The real credential (a service-account token or the user's hub token) never
// lands in the kubeconfig: the kubeconfig holds only a random token valid for
// this run and the proxy's own self-signed certificate. The proxy accepts only
// loopback peers, loopback Host names and, from browsers, pages of loopback
// origins, which defeats DNS rebinding and cross-site requests from a
// browser.
package localproxy

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"time"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/copybuf"
	"tether.dev/tether/internal/upgrade"
)

// Config configures one local proxy.
type Config struct {
	// Upstream is the hub's gateway URL for one cluster, e.g.
	// https://hub.example.com/k8s/prod/edge-12. Required.
	Upstream *url.URL
	// Transport carries requests to the hub (its TLS settings pin the hub's
	// CA; its Proxy honours HTTPS_PROXY). Nil means a clone of
	// http.DefaultTransport.
	Transport *http.Transport
	// Credential returns the bearer token to send upstream, called per
	// request so that refreshed tokens are picked up. Required.
	Credential func(ctx context.Context) (string, error)
	// Logger receives one line per failed request. Nil discards.
	Logger *slog.Logger
}

// Proxy is a running local proxy.
type Proxy struct {
	cfg        Config
	localToken string
	cert       tls.Certificate
	caPEM      []byte
	proxy      *httputil.ReverseProxy
	logger     *slog.Logger

	mu     sync.Mutex // guards server
	server *http.Server
	closed bool
}

// New validates cfg and makes the proxy's certificate and local token. It
// does no network I/O.
func New(cfg Config) (*Proxy, error) {
	if cfg.Upstream == nil || cfg.Upstream.Host == "" {
		return nil, errors.New("localproxy: Upstream URL is required")
	}
	if cfg.Credential == nil {
		return nil, errors.New("localproxy: Credential is required")
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cert, caPEM, err := selfSigned()
	if err != nil {
		return nil, fmt.Errorf("localproxy: make certificate: %w", err)
	}
	tok := make([]byte, 32)
	rand.Read(tok)
	p := &Proxy{
		cfg:        cfg,
		localToken: base64.RawURLEncoding.EncodeToString(tok),
		cert:       cert,
		caPEM:      caPEM,
		logger:     logger,
	}
	p.proxy = &httputil.ReverseProxy{
		BufferPool: copybuf.Large,
		Rewrite:    p.rewrite,
		Transport:  upgrade.Split(cfg.Transport, upgrade.HTTP1Only(cfg.Transport)),
		// FlushInterval 0: a response of unknown length (watch, logs -f) is
		// flushed after every write anyway; one of known length goes out in
		// full TLS records rather than a flush per 32 KiB read.
		ErrorHandler: p.upstreamError,
	}
	return p, nil
}

// LocalToken is the bearer token kubectl must present to this proxy.
func (p *Proxy) LocalToken() string { return p.localToken }

// CAData is the PEM certificate kubectl must trust for this proxy.
func (p *Proxy) CAData() []byte { return p.caPEM }

// Serve serves on l until ctx ends or Close is called, then waits for
// in-flight requests to finish (long-lived streams are closed).
func (p *Proxy) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelDebug),
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return net.ErrClosed
	}
	p.server = srv
	p.mu.Unlock()

	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			p.Close()
		case <-done:
		}
	}()
	err := srv.ServeTLS(l, "", "")
	close(done)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the proxy: the listener and every open connection, upgraded
// streams included. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.server == nil {
		return nil
	}
	return p.server.Close()
}

// ServeHTTP checks the caller and forwards the request.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !loopbackPeer(r.RemoteAddr) {
		apistatus.Write(w, http.StatusForbidden, "the tether proxy accepts connections from this machine only")
		return
	}
	if !loopbackHost(r.Host) {
		apistatus.Write(w, http.StatusForbidden, fmt.Sprintf("host %q is not a loopback name; use the server address from the kubeconfig tether proxy wrote", r.Host))
		return
	}
	if origin := r.Header.Get("Origin"); origin != "" && !loopbackOrigin(origin) {
		// A browser sends Origin; kubectl and client-go never do. A page of
		// another site gets nothing here, even over a WebSocket.
		apistatus.Write(w, http.StatusForbidden, fmt.Sprintf("requests from web pages of other sites (Origin %q) are refused; use kubectl or a program on this machine", origin))
		return
	}
	got, ok := authheader.Bearer(r.Header.Get("Authorization"))
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(p.localToken)) != 1 {
		apistatus.Write(w, http.StatusUnauthorized, "this tether proxy needs the token from the kubeconfig context it wrote; use that context (kubectl config use-context) or restart tether proxy")
		return
	}
	p.proxy.ServeHTTP(w, r)
}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	pr.SetURL(p.cfg.Upstream)
	pr.Out.Host = p.cfg.Upstream.Host
	// Drop what the client said about itself; the hub decides identity.
	pr.Out.Header.Del("Authorization")
	authheader.StripImpersonation(pr.Out.Header)
	pr.Out.Header.Del("X-Forwarded-For")
	token, err := p.cfg.Credential(pr.In.Context())
	if err != nil {
		// Forward without a credential: the hub answers 401 with its own
		// explanation, and the cause is logged here.
		p.logger.Warn("no credential for request", "err", err)
		return
	}
	pr.Out.Header.Set("Authorization", "Bearer "+token)
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	p.logger.Warn("hub request failed", "path", r.URL.Path, "err", err)
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	apistatus.Write(w, http.StatusBadGateway, fmt.Sprintf("tether proxy could not reach the hub at %s: %v; check the hub address and your network", p.cfg.Upstream.Host, err))
}

func loopbackPeer(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loopbackOrigin reports whether a browser's Origin names a page served
// from this machine; "null" (a sandboxed or file page) does not.
func loopbackOrigin(origin string) bool {
	u, err := url.Parse(origin)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && loopbackHost(u.Host)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// selfSigned makes a certificate for 127.0.0.1, ::1 and localhost, valid
// for a year, and returns it with its PEM.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tether proxy (local)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
