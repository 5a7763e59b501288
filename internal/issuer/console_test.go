package issuer

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

const (
	consoleID       = "test-console"
	consoleRedirect = "https://hub.example:8443/console/auth/callback"
)

// withConsole configures the console client.
func withConsole(c *Config) {
	c.ConsoleClientID, c.ConsoleRedirectURI = consoleID, consoleRedirect
}

// consoleParams is a valid authorization request of the console.
func consoleParams(verifier string) url.Values {
	p := authRequestParams(verifier)
	p.Set("client_id", consoleID)
	p.Set("redirect_uri", consoleRedirect)
	p.Set("scope", "openid profile offline_access")
	return p
}

func TestConsoleAuthorizeRequest(t *testing.T) {
	e := newEnv(t, withConsole)
	verifier := oauth2.GenerateVerifier()
	type outcome struct {
		Status int
		Notice bool // an error page, never a redirect
	}
	tests := []struct {
		name   string
		params url.Values
		want   outcome
	}{
		{"console, its redirect", consoleParams(verifier), outcome{Status: 200}},
		{"console, loopback redirect", withParams(consoleParams(verifier), url.Values{"redirect_uri": {testRedirect}}), outcome{Status: 400, Notice: true}},
		{"console, other path", withParams(consoleParams(verifier), url.Values{"redirect_uri": {"https://hub.example:8443/console/auth/callback2"}}), outcome{Status: 400, Notice: true}},
		{"console, with query", withParams(consoleParams(verifier), url.Values{"redirect_uri": {consoleRedirect + "?x=1"}}), outcome{Status: 400, Notice: true}},
		{"console, other host", withParams(consoleParams(verifier), url.Values{"redirect_uri": {"https://evil.example/console/auth/callback"}}), outcome{Status: 400, Notice: true}},
		{"console, no redirect", withParams(consoleParams(verifier), url.Values{"redirect_uri": {""}}), outcome{Status: 400, Notice: true}},
		{"CLI, console redirect", withParams(authRequestParams(verifier), url.Values{"redirect_uri": {consoleRedirect}}), outcome{Status: 400, Notice: true}},
		{"CLI, loopback", authRequestParams(verifier), outcome{Status: 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.get(t, e.url+authorizePath+"?"+tt.params.Encode())
			got := outcome{Status: r.status, Notice: strings.Contains(r.body, `class="error"`)}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
			}
		})
	}
}

// TestConsoleWithoutClient: a hub without a console client knows no
// console.
func TestConsoleWithoutClient(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get(t, e.url+authorizePath+"?"+consoleParams(oauth2.GenerateVerifier()).Encode())
	if r.status != http.StatusBadRequest || !strings.Contains(r.body, "does not know") {
		t.Errorf("console request to an issuer without a console client: %d %s", r.status, r.body)
	}
}

func TestConsoleSignIn(t *testing.T) {
	e := newEnv(t, withConsole)
	verifier := oauth2.GenerateVerifier()
	page := e.get(t, e.url+authorizePath+"?"+consoleParams(verifier).Encode())
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "form-action 'self' https://hub.example:8443") {
		t.Errorf("login page CSP %q: want the console's origin in form-action", csp)
	}
	if !strings.Contains(page.body, "returns to the hub&#39;s console") {
		t.Errorf("login page does not say it returns to the console:\n%s", page.body)
	}
	resp, err := e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+consoleParams(verifier).Encode(), aliceLogin, alicePW, "approve")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in answered %s %q, want a redirect", resp.Status, resp.Header.Get("Location"))
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != consoleRedirect {
		t.Fatalf("redirected to %s, want %s", got, consoleRedirect)
	}
	code := loc.Query().Get("code")
	redeem := func(client string) response {
		return e.post(t, tokenPath, url.Values{"grant_type": {"authorization_code"}, "client_id": {client}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {consoleRedirect}})
	}
	// The CLI cannot redeem the console's code (and uses it up trying).
	if got := redeem(cliID).oauth(); got != (oauthErr{400, "invalid_grant"}) {
		t.Errorf("the CLI redeeming the console's code: %+v, want invalid_grant", got)
	}
	resp, err = e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+consoleParams(verifier).Encode(), aliceLogin, alicePW, "approve")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ = url.Parse(resp.Header.Get("Location"))
	code = loc.Query().Get("code")
	tok := decodeOK[tokenResponse](t, redeem(consoleID))

	at, _ := e.verify(t, tok.AccessToken, audience)
	idt, _ := e.verify(t, tok.IDToken, consoleID)
	got := map[string]any{"access azp": at["azp"], "id aud": idt["aud"], "id nonce": idt["nonce"], "refresh client": unverifiedClaims(t, tok.RefreshToken)["client_id"]}
	want := map[string]any{"access azp": consoleID, "id aud": consoleID, "id nonce": "nonce-456", "refresh client": consoleID}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("console tokens (-want +got):\n%s", diff)
	}

	// The console refreshes its own refresh token; the CLI may not.
	refresh := func(client string) response {
		return e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {client}, "refresh_token": {tok.RefreshToken}})
	}
	if got := refresh(cliID).oauth(); got != (oauthErr{400, "invalid_grant"}) {
		t.Errorf("the CLI refreshing the console's token: %+v, want invalid_grant", got)
	}
	decodeOK[tokenResponse](t, refresh(consoleID))
	// The console may not use the device flow nor send a secret.
	if got := e.post(t, deviceCodePath, url.Values{"client_id": {consoleID}}).oauth(); got.Code != "invalid_client" {
		t.Errorf("device authorization for the console: %+v, want invalid_client", got)
	}
	if got := e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {consoleID}, "client_secret": {"x"}, "refresh_token": {tok.RefreshToken}}).oauth(); got.Code != "invalid_client" {
		t.Errorf("console with a secret: %+v, want invalid_client", got)
	}
}

func TestConsoleClientConfig(t *testing.T) {
	st, key := newStoreAndKey(t)
	base := Config{URL: "https://hub.example/oidc", Store: st, Key: key, Audience: audience, CLIClientID: cliID}
	tests := []struct {
		name     string
		id, uri  string
		wantFail bool
	}{
		{"none", "", "", false},
		{"valid", consoleID, consoleRedirect, false},
		{"redirect without client", "", consoleRedirect, true},
		{"no redirect", consoleID, "", true},
		{"http redirect", consoleID, "http://hub.example/console/auth/callback", true},
		{"redirect with fragment", consoleID, consoleRedirect + "#x", true},
		{"same as the CLI", cliID, consoleRedirect, true},
		{"same as the audience", audience, consoleRedirect, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			cfg.ConsoleClientID, cfg.ConsoleRedirectURI = tt.id, tt.uri
			_, err := New(cfg, nil)
			if got := err != nil; got != tt.wantFail {
				t.Errorf("New: %v, want failure %v", err, tt.wantFail)
			}
		})
	}
}
