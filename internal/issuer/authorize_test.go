package issuer

import (
	"maps"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"tether.dev/tether/internal/credentials"
)

const testRedirect = "http://127.0.0.1:49152/callback"

// authParams is a valid authorization request of the CLI for verifier.
func authRequestParams(verifier string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {cliID},
		"redirect_uri":          {testRedirect},
		"scope":                 {"openid profile"},
		"state":                 {"state-123"},
		"nonce":                 {"nonce-456"},
		"code_challenge":        {oauth2.S256ChallengeFromVerifier(verifier)},
		"code_challenge_method": {"S256"},
		"resource":              {audience},
	}
}

// authCode signs alice in on the login page for params and returns the
// redirect's query.
func (e *env) authCode(t *testing.T, params url.Values, password, action string) url.Values {
	t.Helper()
	resp, err := e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+params.Encode(), aliceLogin, password, action)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in answered %s, want a redirect", resp.Status)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if got := loc.Scheme + "://" + loc.Host + loc.Path; got != testRedirect {
		t.Fatalf("redirected to %s, want %s", got, testRedirect)
	}
	return loc.Query()
}

// redeem exchanges an authorization code at the token endpoint.
func (e *env) redeem(t *testing.T, code, verifier, redirect string) response {
	t.Helper()
	return e.post(t, tokenPath, url.Values{"grant_type": {"authorization_code"}, "client_id": {cliID}, "code": {code},
		"code_verifier": {verifier}, "redirect_uri": {redirect}, "resource": {audience}})
}

// signInAlice returns alice's tokens from the authorization code flow.
func (e *env) signInAlice(t *testing.T) tokenResponse {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	q := e.authCode(t, authRequestParams(verifier), alicePW, "approve")
	return decodeOK[tokenResponse](t, e.redeem(t, q.Get("code"), verifier, testRedirect))
}

func TestAuthCodeEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	ctx := testContext(t)
	browser := e.httpClient(true) // follows the redirect to the CLI's loopback listener
	var landed string
	src, err := credentials.New(credentials.Config{
		Issuer: e.url, ClientID: cliID, Audience: audience, Cache: newCache(t), HTTPClient: e.httpClient(false),
		Interactive: true, Flow: credentials.FlowAuthCode,
		OpenBrowser: func(authURL string) error {
			resp, err := e.browserSignIn(t, browser, authURL, aliceLogin, alicePW, "approve")
			if err != nil {
				return err
			}
			resp.Body.Close()
			landed = resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
			if resp.StatusCode != http.StatusOK {
				t.Errorf("the loopback listener answered %s", resp.Status)
			}
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := src.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(landed, "http://127.0.0.1:") {
		t.Errorf("the browser ended at %q, not the loopback listener", landed)
	}
	now := e.clock.Now()
	at, ath := e.verify(t, tok.AccessToken, audience)
	idt, idh := e.verify(t, tok.IDToken, cliID)
	got := map[string]any{
		"access":         stable(t, at, now, time.Hour),
		"access header":  ath,
		"id":             stable(t, idt, now, time.Hour),
		"id header":      idh,
		"refresh header": jwsHeader(t, tok.RefreshToken),
	}
	person := map[string]any{"iss": e.url, "sub": aliceID, "oid": aliceID, "name": "Alice Liddell", "preferred_username": aliceLogin, "idtyp": "user"}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}
	kid := e.iss.PublicKeys()[0].KeyID
	want := map[string]any{
		"access":         with(person, "aud", audience, "azp", cliID, "scp", "openid profile"),
		"access header":  map[string]any{"alg": "ES256", "kid": kid, "typ": "at+jwt"},
		"id":             with(person, "aud", cliID, "azp", cliID, "nonce", idt["nonce"]),
		"id header":      map[string]any{"alg": "ES256", "kid": kid, "typ": "JWT"},
		"refresh header": map[string]any{"alg": "ES256", "kid": kid, "typ": "tether-refresh+jwt"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	if n, _ := idt["nonce"].(string); n == "" {
		t.Error("the ID token has no nonce (the CLI checked it, so it cannot be empty)")
	}
}

func TestAuthorizeRequest(t *testing.T) {
	e := newEnv(t, nil)
	verifier := oauth2.GenerateVerifier()
	// want is what the browser sees: a page (Status, and Notice for an
	// error page) or a redirect to the client with an error.
	type outcome struct {
		Status int
		Notice bool   // an error page, never a redirect
		Error  string // the redirect's error
		State  string // the redirect's state
	}
	tests := []struct {
		name string
		set  url.Values // parameters replaced; "" removes
		want outcome
	}{
		{"valid", nil, outcome{Status: 200}},
		{"IPv6 loopback", url.Values{"redirect_uri": {"http://[::1]:5000/cb"}}, outcome{Status: 200}},
		{"localhost", url.Values{"redirect_uri": {"http://localhost:5000/cb?x=1"}}, outcome{Status: 200}},
		{"https elsewhere", url.Values{"redirect_uri": {"https://evil.example/cb"}}, outcome{Status: 400, Notice: true}},
		{"http elsewhere", url.Values{"redirect_uri": {"http://evil.example:80/cb"}}, outcome{Status: 400, Notice: true}},
		{"other loopback address", url.Values{"redirect_uri": {"http://127.0.0.2:5000/cb"}}, outcome{Status: 400, Notice: true}},
		{"https loopback", url.Values{"redirect_uri": {"https://127.0.0.1:5000/cb"}}, outcome{Status: 400, Notice: true}},
		{"no port", url.Values{"redirect_uri": {"http://127.0.0.1/cb"}}, outcome{Status: 400, Notice: true}},
		{"user info", url.Values{"redirect_uri": {"http://evil.example@127.0.0.1:5000/cb"}}, outcome{Status: 400, Notice: true}},
		{"lookalike host", url.Values{"redirect_uri": {"http://127.0.0.1.evil.example:5000/cb"}}, outcome{Status: 400, Notice: true}},
		{"no redirect", url.Values{"redirect_uri": {""}}, outcome{Status: 400, Notice: true}},
		{"unknown client", url.Values{"client_id": {"someone-else"}}, outcome{Status: 400, Notice: true}},
		{"no PKCE", url.Values{"code_challenge": {""}, "code_challenge_method": {""}}, outcome{Status: 303, Error: "invalid_request", State: "state-123"}},
		{"plain PKCE", url.Values{"code_challenge_method": {"plain"}}, outcome{Status: 303, Error: "invalid_request", State: "state-123"}},
		{"short challenge", url.Values{"code_challenge": {"abc"}}, outcome{Status: 303, Error: "invalid_request", State: "state-123"}},
		{"implicit", url.Values{"response_type": {"token"}}, outcome{Status: 303, Error: "unsupported_response_type", State: "state-123"}},
		{"unknown scope", url.Values{"scope": {"openid admin"}}, outcome{Status: 303, Error: "invalid_scope", State: "state-123"}},
		{"other resource", url.Values{"resource": {"https://graph.example"}}, outcome{Status: 303, Error: "invalid_target", State: "state-123"}},
		{"prompt none", url.Values{"prompt": {"none"}}, outcome{Status: 303, Error: "login_required", State: "state-123"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			params := withParams(authRequestParams(verifier), tt.set)
			r := e.get(t, e.url+authorizePath+"?"+params.Encode())
			loc, _ := url.Parse(r.header.Get("Location"))
			got := outcome{Status: r.status, Notice: strings.Contains(r.body, `class="error"`), Error: loc.Query().Get("error"), State: loc.Query().Get("state")}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
			}
		})
	}
}

// withParams returns params with set's values replacing its own; an
// empty value removes the parameter.
func withParams(params, set url.Values) url.Values {
	for k, v := range set {
		params[k] = v
		if len(v) == 1 && v[0] == "" {
			delete(params, k)
		}
	}
	return params
}

func TestLoginPage(t *testing.T) {
	e := newEnv(t, nil)
	params := authRequestParams(oauth2.GenerateVerifier())
	params.Set("state", `"><script>alert(1)</script>`)
	r := e.get(t, e.url+authorizePath+"?"+params.Encode())
	if strings.Contains(r.body, "<script>") {
		t.Errorf("the state is not escaped:\n%s", r.body)
	}
	f := parseForm(t, r.body)
	got := map[string]any{
		"action": f.action,
		"state":  f.fields.Get("state"),
		"CSP":    r.header.Get("Content-Security-Policy"),
		"XFO":    r.header.Get("X-Frame-Options"),
		"cache":  r.header.Get("Cache-Control"),
		"ref":    r.header.Get("Referrer-Policy"),
	}
	want := map[string]any{
		"action": "/oidc/authorize",
		"state":  params.Get("state"),
		"CSP":    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://127.0.0.1:49152",
		"XFO":    "DENY",
		"cache":  "no-store",
		"ref":    "no-referrer",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("login page (-want +got):\n%s", diff)
	}

	// A wrong password shows the form again, with the request kept.
	resp, err := e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+params.Encode(), aliceLogin, "wrong password!", "approve")
	if err != nil {
		t.Fatal(err)
	}
	r, err = readResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusForbidden || !strings.Contains(r.body, "Wrong login name or password") || r.header.Get("Location") != "" {
		t.Errorf("wrong password: %d, Location %q", r.status, r.header.Get("Location"))
	}
}

func TestAuthCodeRedemption(t *testing.T) {
	e := newEnv(t, nil)
	verifier := oauth2.GenerateVerifier()
	newCode := func(t *testing.T) string {
		q := e.authCode(t, authRequestParams(verifier), alicePW, "approve")
		if q.Get("state") != "state-123" || q.Get("iss") != e.url {
			t.Errorf("redirect state %q, iss %q", q.Get("state"), q.Get("iss"))
		}
		return q.Get("code")
	}

	// Each step redeems a code; reuse names the previous step's code.
	type step struct {
		name     string
		newCode  bool
		advance  time.Duration
		verifier string
		redirect string
		want     oauthErr
	}
	steps := []step{
		{"wrong verifier", true, 0, oauth2.GenerateVerifier(), testRedirect, oauthErr{400, "invalid_grant"}},
		{"right verifier after a wrong one", false, 0, verifier, testRedirect, oauthErr{400, "invalid_grant"}},
		{"redirect mismatch", true, 0, verifier, "http://127.0.0.1:49153/callback", oauthErr{400, "invalid_grant"}},
		{"malformed verifier", true, 0, "short", testRedirect, oauthErr{400, "invalid_grant"}},
		{"no verifier", true, 0, "", testRedirect, oauthErr{400, "invalid_request"}},
		{"success", true, 0, verifier, testRedirect, oauthErr{200, ""}},
		{"reuse", false, 0, verifier, testRedirect, oauthErr{400, "invalid_grant"}},
		{"expired", true, authCodeTTL, verifier, testRedirect, oauthErr{400, "invalid_grant"}},
	}
	var code string
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.newCode {
				code = newCode(t)
			}
			e.clock.Advance(s.advance)
			got := e.redeem(t, code, s.verifier, s.redirect).oauth()
			if diff := cmp.Diff(s.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("deny", func(t *testing.T) {
		q := e.authCode(t, authRequestParams(verifier), "", "deny")
		got := map[string]string{"error": q.Get("error"), "state": q.Get("state"), "code": q.Get("code")}
		if diff := cmp.Diff(map[string]string{"error": "access_denied", "state": "state-123", "code": ""}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("other client", func(t *testing.T) {
		code := newCode(t)
		r := e.post(t, tokenPath, url.Values{"grant_type": {"authorization_code"}, "client_id": {spClientID}, "code": {code},
			"code_verifier": {verifier}, "redirect_uri": {testRedirect}})
		if diff := cmp.Diff(oauthErr{401, "invalid_client"}, r.oauth()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func TestAuthCodeBound(t *testing.T) {
	e := newEnv(t, nil)
	e.iss.codes.max = 1
	verifier := oauth2.GenerateVerifier()
	code := e.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
	resp, err := e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+authRequestParams(verifier).Encode(), aliceLogin, alicePW, "approve")
	if err != nil {
		t.Fatal(err)
	}
	r, err := readResponse(resp)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "too many sign-ins") {
		t.Errorf("a code past the bound: %d\n%s", r.status, r.body)
	}
	// A redeemed code frees its place.
	if r := e.redeem(t, code, verifier, testRedirect); r.status != http.StatusOK {
		t.Fatalf("redeem: %d %s", r.status, r.body)
	}
	e.authCode(t, authRequestParams(verifier), alicePW, "approve")
}
