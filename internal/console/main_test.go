package console_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/net/html"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/console"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/issuer"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	adminToken = "tat_console-test"
	consoleID  = "tether-console"
	alicePW    = "correct horse battery staple"
	bobPW      = "another long password"
)

// clock is the fixture's clock: the real time, plus what tests advanced.
type clock struct {
	mu  sync.Mutex
	off time.Duration // guarded by mu
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.off += d
}

// fixture is a real hub (SQLite, the embedded issuer with its console
// client, the console) served over TLS on loopback.
type fixture struct {
	url            string
	store          store.Store
	clock          *clock
	roots          *x509.CertPool
	aliceID, bobID string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{url: "https://" + l.Addr().String(), store: st, clock: &clock{}}
	cert := selfSigned(t)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	f.roots = x509.NewCertPool()
	f.roots.AddCert(leaf)

	issKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var h *hub.Hub
	record := func(e audit.Event) {
		if h != nil {
			h.RecordAudit(e)
		}
	}
	iss, err := issuer.New(issuer.Config{URL: f.url + "/oidc", Store: st, Key: issKey, Audience: "tether", CLIClientID: "tether-cli",
		ConsoleClientID: consoleID, ConsoleRedirectURI: console.RedirectURI(f.url), AccessTokenTTL: 5 * time.Minute, Audit: record, Now: f.clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := identity.NewVerifier(identity.Config{Now: f.clock.Now, Issuers: []identity.IssuerConfig{{
		URL: f.url + "/oidc", Audiences: []string{"tether"}, SigningAlgorithms: []string{"ES256"}, Keys: iss.PublicKeys()}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	con, err := console.New(console.Config{URL: f.url + "/console", HubURL: f.url, Store: st, Refresh: 2 * time.Second, Now: f.clock.Now,
		Issuers: []console.Issuer{{Name: "this hub", URL: f.url + "/oidc", ClientID: consoleID, Embedded: true}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	h, err = hub.New(hub.Config{Store: st, AdminTokenHash: hub.HashToken(adminToken), HubID: "console-test", AssertionKey: key, Replica: "test",
		Verifier: verifier, EmbeddedIssuer: f.url + "/oidc", IssuerHandler: iss, Console: con.Handler, Now: f.clock.Now, DrainGrace: time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, l, &tls.Config{Certificates: []tls.Certificate{cert}}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("the hub did not stop within 20 s")
		}
	})

	f.aliceID = f.addUser(t, "Alice Liddell", "alice@example.com", alicePW)
	f.bobID = f.addUser(t, "Bob", "bob@example.com", bobPW)
	if err := st.CreateRoleAssignment(ctx, store.RoleAssignment{Assignment: access.Assignment{ID: "00000000-0000-4000-8000-00000000a11c",
		PrincipalID: f.aliceID, PrincipalType: access.PrincipalUser, RoleID: access.RoleOwner, Scope: "/"}, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) addUser(t *testing.T, name, login, password string) string {
	t.Helper()
	hash, err := issuer.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	id := newUUID(t)
	if err := f.store.CreatePrincipal(t.Context(), store.Principal{ID: id, Type: access.PrincipalUser, DisplayName: name, LoginName: login, PasswordHash: hash, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return id
}

func newUUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// admin calls the hub's API with the admin token.
func (f *fixture) admin(t *testing.T, method, path string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, f.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminToken)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots}}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("%s %s: %s %s", method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatal(err)
		}
	}
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// browser is a browser without script: a cookie jar, and redirects
// followed one at a time so each answer can be checked.
type browser struct {
	f      *fixture
	client *http.Client
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots}}
	t.Cleanup(tr.CloseIdleConnections)
	return &browser{f: f, client: &http.Client{Jar: jar, Transport: tr, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is one answer.
type page struct {
	url    *url.URL
	status int
	header http.Header
	body   string
	doc    *html.Node
}

func (b *browser) do(t *testing.T, req *http.Request) *page {
	t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := &page{url: req.URL, status: resp.StatusCode, header: resp.Header, body: string(body)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		if p.doc, err = html.Parse(bytes.NewReader(body)); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// get loads a URL or a path of the hub.
func (b *browser) get(t *testing.T, u string) *page {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.f.url + u
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return b.do(t, req)
}

// post submits a form as a browser of the console's origin does, with
// headers changed by hdr.
func (b *browser) post(t *testing.T, u string, form url.Values, hdr http.Header) *page {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.f.url + u
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", b.f.url)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for k, v := range hdr {
		req.Header[k] = v
	}
	return b.do(t, req)
}

// follow loads the page p redirects to, and so on until one is not a
// redirect.
func (b *browser) follow(t *testing.T, p *page) *page {
	t.Helper()
	for n := 0; p.status >= 300 && p.status < 400; n++ {
		if n == 10 {
			t.Fatal("more than 10 redirects")
		}
		loc, err := p.url.Parse(p.header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		p = b.get(t, loc.String())
	}
	return p
}

// signIn signs in through the console's sign-in link and the embedded
// issuer's login page, and returns the callback's answer and the page
// it leads to.
func (b *browser) signIn(t *testing.T, login, password string) (callback, landed *page) {
	t.Helper()
	start := b.get(t, "/console/")
	link := byID(start.doc, "sign-in")
	if link == nil {
		t.Fatalf("no a#sign-in on the signed-out page:\n%s", start.body)
	}
	p := b.follow(t, b.get(t, attr(link, "href")))
	form := find(p.doc, func(n *html.Node) bool { return n.Data == "form" })
	if form == nil {
		t.Fatalf("no login form at %s:\n%s", p.url, p.body)
	}
	v := formValues(form)
	v.Set("login", login)
	v.Set("password", password)
	v.Set("action", "approve")
	action, _ := p.url.Parse(attr(form, "action"))
	// The issuer's page is a form of the hub's own origin.
	p = b.post(t, action.String(), v, nil)
	if p.status != http.StatusSeeOther {
		t.Fatalf("login answered %d:\n%s", p.status, p.body)
	}
	loc, _ := p.url.Parse(p.header.Get("Location"))
	callback = b.get(t, loc.String())
	return callback, b.follow(t, callback)
}

// csrf is the CSRF token of the signed-in page p.
func csrf(t *testing.T, p *page) string {
	t.Helper()
	n := find(p.doc, func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == "csrf" })
	if n == nil {
		t.Fatalf("no CSRF field on %s:\n%s", p.url, p.body)
	}
	return attr(n, "value")
}

// DOM helpers.

func attr(n *html.Node, key string) string {
	if n == nil {
		return ""
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func find(n *html.Node, match func(*html.Node) bool) *html.Node {
	all := findAll(n, match)
	if len(all) == 0 {
		return nil
	}
	return all[0]
}

func findAll(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n == nil {
			return
		}
		if n.Type == html.ElementNode && match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byID(n *html.Node, id string) *html.Node {
	return find(n, func(n *html.Node) bool { return attr(n, "id") == id })
}

func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

func text(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if n != nil {
		walk(n)
	}
	return strings.TrimSpace(b.String())
}

// cell is the text of the td of class in row.
func cell(row *html.Node, class string) string {
	return text(find(row, func(n *html.Node) bool { return n.Data == "td" && hasClass(n, class) }))
}

// formValues are the values a form submits as it stands (inputs and
// selected options).
func formValues(form *html.Node) url.Values {
	v := url.Values{}
	for _, in := range findAll(form, func(n *html.Node) bool { return n.Data == "input" }) {
		if name := attr(in, "name"); name != "" {
			v.Set(name, attr(in, "value"))
		}
	}
	return v
}
