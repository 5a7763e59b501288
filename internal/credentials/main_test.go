package credentials

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tether.dev/tether/test/oidcprovider"
)

const (
	hubAudience  = "api://tether-hub"
	cliClientID  = "tether-cli"
	spClientID   = "deployer"
	spSecret     = "deployer-secret"
	alice        = "alice@tether.test"
	alicePW      = "alice-pw"
	testDeadline = 2 * time.Minute
)

// provider is the one OIDC provider process the package's tests share;
// TestMain starts it before and stops it after the tests.
var provider *oidcprovider.Provider

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	p, err := oidcprovider.Start(ctx, oidcprovider.Config{
		Users: []oidcprovider.User{{Username: alice, Password: alicePW, Name: "Alice"}},
		Clients: []oidcprovider.Client{
			{ID: cliClientID},
			{ID: spClientID, Secret: spSecret, Name: "CI deployer"},
		},
		Resources: []oidcprovider.Resource{{Identifier: hubAudience}},
	})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	provider = p
	code := m.Run()
	if err := p.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "close provider:", err)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	return code
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// issuerClient trusts the provider's CA and keeps no idle connections, so
// no goroutine outlives a request.
func issuerClient() *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: provider.RootCAs()},
			DisableKeepAlives: true,
		},
	}
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	c, err := OpenCache(t.TempDir() + "/tether")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// clock is a movable Now.
type clock struct {
	mu  sync.Mutex
	now time.Time // guarded by mu
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// tokenProxy is a reverse proxy in front of the provider's token endpoint
// that counts the requests it forwards.
type tokenProxy struct {
	srv   *httptest.Server
	calls atomic.Int64
	// endpoints are the provider's, with the token endpoint replaced by
	// the proxy's.
	endpoints Endpoints
}

func startTokenProxy(t *testing.T) *tokenProxy {
	t.Helper()
	ep, err := Discover(testContext(t), issuerClient(), provider.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	target, err := url.Parse(ep.TokenURL)
	if err != nil {
		t.Fatal(err)
	}
	tp := &tokenProxy{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host, r.Out.Host = target.Scheme, target.Host, target.Host
		},
		Transport: issuerClient().Transport,
	}
	tp.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == target.Path {
			tp.calls.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(tp.srv.Close)
	ep.TokenURL = tp.srv.URL + target.Path
	tp.endpoints = ep
	return tp
}

// promptWriter collects what a flow prints and hands the first write to
// the test.
type promptWriter struct {
	first chan string // size 1: the first write

	mu  sync.Mutex
	all strings.Builder // guarded by mu
}

func newPromptWriter() *promptWriter { return &promptWriter{first: make(chan string, 1)} }

func (w *promptWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.all.Len() == 0 {
		w.first <- string(p)
	}
	w.all.Write(p)
	return len(p), nil
}

func (w *promptWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

func claims(t *testing.T, jwt string) map[string]any {
	t.Helper()
	c, err := oidcprovider.DecodeClaims(jwt)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
