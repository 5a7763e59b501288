package playwright

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"image/png"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/issuer"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testWriter sends the script's log lines to the test's log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

const (
	cliID    = "tether-cli"
	login    = "alice@example.com"
	password = "correct horse battery"
	display  = "Alice Liddell"
)

// issuerServer is the real embedded issuer on a TLS server, with a store
// holding one user with a password.
func issuerServer(t *testing.T) (srv *httptest.Server, issuerURL string) {
	t.Helper()
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	srv = httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	issuerURL = srv.URL + "/oidc"
	iss, err := issuer.New(issuer.Config{URL: issuerURL, Store: st, Key: key, Audience: "tether", CLIClientID: cliID}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/oidc/", iss)
	hash, err := issuer.HashPassword(password)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreatePrincipal(t.Context(), store.Principal{ID: "a11ce000-0000-4000-8000-000000000001", Type: access.PrincipalUser,
		DisplayName: display, LoginName: login, PasswordHash: hash, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return srv, issuerURL
}

// postForm posts to the issuer and decodes its JSON answer.
func postForm(t *testing.T, c *http.Client, u string, form url.Values, v any) int {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("POST %s: %d, body not JSON: %v", u, resp.StatusCode, err)
	}
	return resp.StatusCode
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// TestSmokeDeviceSignIn drives the embedded issuer's device page in the
// real browser: the harness installs playwright-core, starts the system's
// Chromium trusting the server's pinned certificate, and the person's
// approval really completes the device flow (a token is issued).
func TestSmokeDeviceSignIn(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	srv, issuerURL := issuerServer(t)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DisableKeepAlives: true}}

	var da struct {
		DeviceCode              string `json:"device_code"`
		VerificationURIComplete string `json:"verification_uri_complete"`
	}
	if code := postForm(t, c, issuerURL+"/devicecode", url.Values{"client_id": {cliID}, "scope": {"openid"}}, &da); code != 200 || da.DeviceCode == "" {
		t.Fatalf("device authorization: %d %+v", code, da)
	}

	shots := filepath.Join(t.TempDir(), "screenshots")
	res, err := Run(ctx, Options{
		Script:      "smoke.mjs",
		Params:      map[string]string{"url": da.VerificationURIComplete, "login": login, "password": password, "displayName": display},
		TrustPEM:    certPEM(srv),
		Screenshots: shots,
		Log:         testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK {
		t.Fatalf("the script failed: %s", res.Failed())
	}
	if len(res.Steps) != 2 {
		t.Errorf("the script reported %d steps, want 2: %+v", len(res.Steps), res.Steps)
	}
	for _, s := range res.Steps {
		checkPNG(t, s.Screenshot)
	}

	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	code := postForm(t, c, issuerURL+"/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {cliID}, "device_code": {da.DeviceCode}}, &tok)
	if code != 200 || tok.AccessToken == "" {
		t.Errorf("the device code after the browser approved it: %d %q; want a token", code, tok.Error)
	}
}

// TestUntrustedCertificate: without the server's certificate in TrustPEM,
// the browser refuses the page; the harness never ignores certificate
// errors wholesale.
func TestUntrustedCertificate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	_, issuerURL := issuerServer(t)
	res, err := Run(ctx, Options{
		Script:      "smoke.mjs",
		Params:      map[string]string{"url": issuerURL + "/device", "login": login, "password": password, "displayName": display},
		Screenshots: filepath.Join(t.TempDir(), "screenshots"),
		Log:         testWriter{t},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK || !strings.Contains(res.Error, "ERR_CERT") {
		t.Fatalf("the page with an untrusted certificate: ok=%v error %q; want a certificate error", res.OK, res.Error)
	}
}

// TestBarrier: the script waits at a barrier until the Go side returns,
// and fails with the Go side's error when it returns one.
func TestBarrier(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	for _, tc := range []struct {
		name    string
		barrier func(ctx context.Context, name string) error
		wantOK  bool
		wantErr string
	}{
		{"the Go side continues", func(ctx context.Context, name string) error { return nil }, true, ""},
		{"the Go side aborts", func(ctx context.Context, name string) error { return errors.New("the agent would not stop") }, false, "the agent would not stop"},
		{"no Barrier function", nil, false, "no Barrier function"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []string
			barrier := tc.barrier
			if barrier != nil {
				barrier = func(ctx context.Context, name string) error {
					seen = append(seen, name)
					return tc.barrier(ctx, name)
				}
			}
			res, err := Run(ctx, Options{Script: "barrier.mjs", Params: map[string]string{"name": "agent stopped"},
				Screenshots: filepath.Join(t.TempDir(), "screenshots"), Log: testWriter{t}, Barrier: barrier})
			if err != nil {
				t.Fatal(err)
			}
			if res.OK != tc.wantOK || !strings.Contains(res.Error, tc.wantErr) {
				t.Errorf("ok=%v error %q; want ok=%v and an error containing %q", res.OK, res.Error, tc.wantOK, tc.wantErr)
			}
			if tc.barrier != nil && (len(seen) != 1 || seen[0] != "agent stopped") {
				t.Errorf("barriers seen by the Go side: %q; want [agent stopped]", seen)
			}
			if tc.wantOK && string(res.Data["after"]) != `"agent stopped"` {
				t.Errorf("data.after = %s; want the step after the barrier to have run", res.Data["after"])
			}
		})
	}
}

// TestCanceled: when ctx ends while the script runs, Run stops it (and
// Playwright its browser) and returns.
func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	res, err := Run(runCtx, Options{Script: "barrier.mjs", Params: map[string]any{"name": "hang", "hang": true},
		Screenshots: filepath.Join(t.TempDir(), "screenshots"), Log: testWriter{t},
		// The script goes on after the barrier, then hangs: end the run.
		Barrier: func(context.Context, string) error { stop(); return nil }})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run of a script that hangs after its context ended: %+v, %v; want context.Canceled", res, err)
	}
	t.Logf("Run: %v", err)
}

// checkPNG fails unless path is a non-empty PNG image.
func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("screenshot: %v", err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("screenshot %s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() == 0 || b.Dy() == 0 {
		t.Errorf("screenshot %s is %dx%d", path, b.Dx(), b.Dy())
	}
}
