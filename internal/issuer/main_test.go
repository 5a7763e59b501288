package issuer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/goleak"
	"golang.org/x/net/html"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	audience   = "tether"
	cliID      = "tether-cli"
	aliceID    = "a11ce000-0000-4000-8000-000000000001"
	aliceLogin = "alice@example.com"
	alicePW    = "correct horse battery"
	bobID      = "b0b00000-0000-4000-8000-000000000002" // a user without a password
	bobLogin   = "bob@example.com"
	spID       = "5e000000-0000-4000-8000-000000000003"
	spClientID = "c1000000-0000-4000-8000-000000000004"
	sp2ID      = "5e000000-0000-4000-8000-000000000005" // only an expired secret
	sp2Client  = "c1000000-0000-4000-8000-000000000006"
)

// clock is the real time plus an offset the test moves forward.
type clock struct {
	mu     sync.Mutex
	offset time.Duration // guarded by mu
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// env is an issuer on a TLS server with a real store holding alice (with
// a password), bob (without) and two service principals.
type env struct {
	store    *sqlite.Store
	iss      *Issuer
	srv      *httptest.Server
	url      string // the issuer URL
	key      *ecdsa.PrivateKey
	clock    *clock
	roots    *x509.CertPool
	spSecret string // spClientID's secret
	expired  string // sp2Client's expired secret
	logs     *lockedBuffer
}

// lockedBuffer collects the issuer's log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder // guarded by mu
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newEnv(t *testing.T, modify func(*Config)) *env {
	t.Helper()
	ctx := t.Context()
	st, key := newStoreAndKey(t)
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	e := &env{store: st, srv: srv, url: srv.URL + "/oidc", key: key, clock: &clock{}, logs: &lockedBuffer{}}
	e.roots = x509.NewCertPool()
	e.roots.AddCert(srv.Certificate())
	cfg := Config{URL: e.url, Store: st, Key: key, Audience: audience, CLIClientID: cliID, Now: e.clock.Now}
	if modify != nil {
		modify(&cfg)
	}
	var err error
	if e.iss, err = New(cfg, slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/oidc/", e.iss)

	now := time.Now()
	hash, err := HashPassword(alicePW)
	if err != nil {
		t.Fatal(err)
	}
	var sec1, sec2 store.SecretHash
	e.spSecret, sec1 = NewClientSecret()
	e.expired, sec2 = NewClientSecret()
	for _, p := range []store.Principal{
		{ID: aliceID, Type: access.PrincipalUser, DisplayName: "Alice Liddell", LoginName: aliceLogin, PasswordHash: hash, CreatedAt: now},
		{ID: bobID, Type: access.PrincipalUser, DisplayName: "Bob", LoginName: bobLogin, CreatedAt: now},
		{ID: spID, Type: access.PrincipalServicePrincipal, DisplayName: "CI deployer", ClientID: spClientID, CreatedAt: now},
		{ID: sp2ID, Type: access.PrincipalServicePrincipal, DisplayName: "Old job", ClientID: sp2Client, CreatedAt: now},
	} {
		if err := st.CreatePrincipal(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []store.ClientSecret{
		{ID: "00000000-0000-4000-8000-0000000000a1", PrincipalID: spID, Hash: sec1, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)},
		{ID: "00000000-0000-4000-8000-0000000000a2", PrincipalID: sp2ID, Hash: sec2, CreatedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour)},
	} {
		if err := st.CreateClientSecret(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// newStoreAndKey opens an empty store in a temporary directory, and makes
// a signing key.
func newStoreAndKey(tb testing.TB) (*sqlite.Store, *ecdsa.PrivateKey) {
	tb.Helper()
	st, err := sqlite.Open(tb.Context(), filepath.Join(tb.TempDir(), "hub.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return st, key
}

// httpClient trusts the server and keeps no idle connection, so that no
// goroutine outlives a test. follow says whether it follows redirects.
func (e *env) httpClient(follow bool) *http.Client {
	c := &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.roots}, DisableKeepAlives: true},
	}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

// endpoints are the issuer's, discovered as the CLI does.
func (e *env) endpoints(t *testing.T) credentials.Endpoints {
	t.Helper()
	ep, err := credentials.Discover(t.Context(), e.httpClient(false), e.url)
	if err != nil {
		t.Fatal(err)
	}
	return ep
}

// response is an answer, its body read.
type response struct {
	status int
	header http.Header
	body   string
}

// oauth is the error of a JSON answer.
func (r response) oauth() oauthErr {
	var e oauthErr
	json.Unmarshal([]byte(r.body), &e)
	e.Status = r.status
	return e
}

// oauthErr is what tests compare of an error answer.
type oauthErr struct {
	Status int
	Code   string `json:"error"`
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", r.status, err, r.body)
	}
	return m
}

func (e *env) do(t *testing.T, req *http.Request) response {
	t.Helper()
	r, err := e.send(req)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// send sends req and reads the answer; unlike do, it may be called from
// any goroutine.
func (e *env) send(req *http.Request) (response, error) {
	resp, err := e.httpClient(false).Do(req)
	if err != nil {
		return response{}, err
	}
	return readResponse(resp)
}

// readResponse reads and closes resp's body.
func readResponse(resp *http.Response) (response, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// post sends form to the issuer's path; basic, if not nil, holds the
// Basic credentials.
func (e *env) post(t *testing.T, path string, form url.Values, basic ...string) response {
	t.Helper()
	r, err := e.postForm(t.Context(), path, form, basic...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// postForm is post for any goroutine.
func (e *env) postForm(ctx context.Context, path string, form url.Values, basic ...string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url+path, strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return e.send(req)
}

func (e *env) get(t *testing.T, rawURL string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e.do(t, req)
}

// deviceAuth asks for a device code as the CLI.
func (e *env) deviceAuth(t *testing.T) deviceAuthResponse {
	t.Helper()
	r := e.post(t, deviceCodePath, url.Values{"client_id": {cliID}, "scope": {"openid profile"}, "resource": {audience}})
	return decodeOK[deviceAuthResponse](t, r)
}

// decodeOK decodes a successful JSON answer.
func decodeOK[T any](t *testing.T, r response) T {
	t.Helper()
	var v T
	if r.status != http.StatusOK {
		t.Fatalf("answer %d: %s", r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// pollDevice polls the token endpoint once for a device code.
func (e *env) pollDevice(t *testing.T, deviceCode string) response {
	t.Helper()
	return e.post(t, tokenPath, url.Values{"grant_type": {grantDeviceCode}, "client_id": {cliID}, "device_code": {deviceCode}})
}

// submitDevice posts the device page's form as a browser does.
func (e *env) submitDevice(t *testing.T, userCode, login, password, action string) response {
	t.Helper()
	return e.post(t, devicePath, url.Values{"user_code": {userCode}, "login": {login}, "password": {password}, "action": {action}})
}

// form is a page's form: where it posts and its fields' values.
type form struct {
	action string
	fields url.Values
}

// parseForm reads the first form of an HTML page.
func parseForm(t *testing.T, page string) form {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	var f *form
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		attr := func(name string) string {
			for _, a := range n.Attr {
				if a.Key == name {
					return a.Val
				}
			}
			return ""
		}
		switch {
		case n.Data == "form" && f == nil:
			f = &form{action: attr("action"), fields: url.Values{}}
		case n.Data == "input" && f != nil && attr("name") != "":
			f.fields.Set(attr("name"), attr("value"))
		}
	}
	if f == nil {
		t.Fatalf("no form in the page:\n%s", page)
	}
	return *f
}

// browserSignIn is a browser at the authorization URL: it loads the login
// page, fills in the login name and password, and submits it with
// client, which follows the redirect (or not) as the test wants.
func (e *env) browserSignIn(t *testing.T, client *http.Client, authURL, login, password, action string) (*http.Response, error) {
	t.Helper()
	r := e.get(t, authURL)
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("login page: %d %s", r.status, r.body)
	}
	f := parseForm(t, r.body)
	f.fields.Set("login", login)
	f.fields.Set("password", password)
	f.fields.Set("action", action)
	u, err := url.Parse(e.url)
	if err != nil {
		return nil, err
	}
	u.Path = f.action
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u.String(), strings.NewReader(f.fields.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return client.Do(req)
}

// verify checks token with go-oidc, as a relying party for aud, and
// returns its claims and JWS header.
func (e *env) verify(t *testing.T, token, aud string) (claims, header map[string]any) {
	t.Helper()
	v := oidc.NewVerifier(e.url, &oidc.StaticKeySet{PublicKeys: []crypto.PublicKey{&e.key.PublicKey}},
		&oidc.Config{ClientID: aud, SupportedSigningAlgs: []string{oidc.ES256}, Now: e.clock.Now})
	idt, err := v.Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("verify the token for %s: %v", aud, err)
	}
	if err := idt.Claims(&claims); err != nil {
		t.Fatal(err)
	}
	return claims, jwsHeader(t, token)
}

func jwsHeader(t *testing.T, token string) map[string]any { return jwsPart(t, token, 0) }

// unverifiedClaims decodes a JWT's payload without checking it.
func unverifiedClaims(t *testing.T, token string) map[string]any { return jwsPart(t, token, 1) }

// jwsPart decodes the header (0) or payload (1) of a compact JWS.
func jwsPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %d parts", len(parts))
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// stable returns claims without the values that differ in every token
// (jti, iat, nbf, exp, auth_time), after checking them: a jti, iat near
// now, nbf equal to iat, exp ttl after iat.
func stable(t *testing.T, claims map[string]any, now time.Time, ttl time.Duration) map[string]any {
	t.Helper()
	out := maps.Clone(claims)
	if jti, _ := out["jti"].(string); len(jti) < 16 {
		t.Errorf("jti %v is not a random ID", out["jti"])
	}
	iat, _ := out["iat"].(float64)
	if d := time.Unix(int64(iat), 0).Sub(now); d < -5*time.Second || d > 5*time.Second {
		t.Errorf("iat %v is %s from now", iat, d)
	}
	if nbf, ok := out["nbf"]; ok && nbf != iat {
		t.Errorf("nbf %v, iat %v", nbf, iat)
	}
	if exp, _ := out["exp"].(float64); time.Duration(exp-iat)*time.Second != ttl {
		t.Errorf("exp - iat = %vs, want %s", exp-iat, ttl)
	}
	for _, k := range []string{"jti", "iat", "nbf", "exp", "auth_time"} {
		delete(out, k)
	}
	return out
}

var devicePrompt = regexp.MustCompile(`open (\S+) and enter the code (\S+)`)

// promptWriter hands the first thing a flow prints to the test.
type promptWriter struct {
	first chan string // size 1: the first write
	once  sync.Once
}

func newPromptWriter() *promptWriter { return &promptWriter{first: make(chan string, 1)} }

func (w *promptWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { w.first <- string(p) })
	return len(p), nil
}

func newCache(t *testing.T) *credentials.Cache {
	t.Helper()
	c, err := credentials.OpenCache(t.TempDir() + "/tether")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
