package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/identity"
)

func TestClientCredentialsEndToEnd(t *testing.T) {
	e := newEnv(t, nil)
	c := credentials.Client{Endpoints: e.endpoints(t), ClientID: spClientID, ClientSecret: e.spSecret, Audience: audience, HTTPClient: e.httpClient(false)}
	tok, err := c.ClientCredentials(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	claims, header := e.verify(t, tok.AccessToken, audience)
	got := map[string]any{"claims": stable(t, claims, e.clock.Now(), time.Hour), "header": header,
		"refresh token": tok.RefreshToken, "id token": tok.Extra("id_token"), "type": tok.TokenType}
	want := map[string]any{
		"claims": map[string]any{"iss": e.url, "sub": spID, "oid": spID, "aud": audience, "azp": spClientID, "name": "CI deployer", "idtyp": "app"},
		"header": map[string]any{"alg": "ES256", "typ": "at+jwt", "kid": e.iss.PublicKeys()[0].KeyID},
		// A service principal gets neither a refresh token nor an ID token.
		"refresh token": "", "id token": nil, "type": "Bearer",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token (-want +got):\n%s", diff)
	}
}

func TestClientCredentials(t *testing.T) {
	e := newEnv(t, nil)
	cc := func(kv ...string) url.Values {
		v := url.Values{"grant_type": {"client_credentials"}}
		for i := 0; i < len(kv); i += 2 {
			v.Add(kv[i], kv[i+1])
		}
		return v
	}
	tests := []struct {
		name  string
		form  url.Values
		basic []string
		want  oauthErr
	}{
		{"basic", cc(), []string{spClientID, e.spSecret}, oauthErr{200, ""}},
		{"form", cc("client_id", spClientID, "client_secret", e.spSecret), nil, oauthErr{200, ""}},
		{"basic and form agree", cc("client_id", spClientID, "client_secret", e.spSecret), []string{spClientID, e.spSecret}, oauthErr{200, ""}},
		{"basic and form differ", cc("client_id", sp2Client), []string{spClientID, e.spSecret}, oauthErr{400, "invalid_request"}},
		{"entra scope", cc("scope", audience+"/.default"), []string{spClientID, e.spSecret}, oauthErr{200, ""}},
		{"audience scope and resource", cc("scope", audience, "resource", audience), []string{spClientID, e.spSecret}, oauthErr{200, ""}},
		{"wrong secret", cc(), []string{spClientID, e.spSecret + "x"}, oauthErr{401, "invalid_client"}},
		{"another's secret", cc(), []string{sp2Client, e.spSecret}, oauthErr{401, "invalid_client"}},
		{"unknown client", cc(), []string{"c1000000-0000-4000-8000-0000000000ff", e.spSecret}, oauthErr{401, "invalid_client"}},
		{"client ID not a UUID", cc(), []string{"deployer", e.spSecret}, oauthErr{401, "invalid_client"}},
		{"expired secret", cc(), []string{sp2Client, e.expired}, oauthErr{401, "invalid_client"}},
		{"no secret", cc("client_id", spClientID), nil, oauthErr{401, "invalid_client"}},
		{"the CLI", cc("client_id", cliID, "client_secret", "x"), nil, oauthErr{400, "unauthorized_client"}},
		{"other scope", cc("scope", "https://graph.example/.default"), []string{spClientID, e.spSecret}, oauthErr{400, "invalid_scope"}},
		{"other resource", cc("resource", "https://graph.example"), []string{spClientID, e.spSecret}, oauthErr{400, "invalid_target"}},
		{"other audience", cc("audience", "kubernetes"), []string{spClientID, e.spSecret}, oauthErr{400, "invalid_target"}},
		{"repeated parameter", cc("client_id", spClientID, "client_id", spClientID, "client_secret", e.spSecret), nil, oauthErr{400, "invalid_request"}},
		{"no grant type", url.Values{"client_id": {spClientID}}, []string{spClientID, e.spSecret}, oauthErr{400, "invalid_request"}},
		{"unknown grant type", url.Values{"grant_type": {"password"}}, []string{spClientID, e.spSecret}, oauthErr{400, "unsupported_grant_type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, tokenPath, tt.form, tt.basic...)
			if diff := cmp.Diff(tt.want, r.oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
			}
			if r.header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", r.header.Get("Cache-Control"))
			}
			if (r.status == http.StatusUnauthorized) != (r.header.Get("WWW-Authenticate") != "") {
				t.Errorf("status %d with WWW-Authenticate %q", r.status, r.header.Get("WWW-Authenticate"))
			}
		})
	}

	// Which of ID and secret was wrong is not told.
	descr := func(id, secret string) string {
		return e.post(t, tokenPath, cc(), id, secret).json(t)["error_description"].(string)
	}
	unknown, wrong, expired := descr("c1000000-0000-4000-8000-0000000000ff", e.spSecret), descr(spClientID, "tcs_wrong"), descr(sp2Client, e.expired)
	if unknown != wrong || wrong != expired {
		t.Errorf("the answers differ: unknown client %q, wrong secret %q, expired secret %q", unknown, wrong, expired)
	}
	if strings.Contains(e.post(t, tokenPath, cc(), spClientID, "tcs_wrong").body, "tcs_wrong") {
		t.Error("the answer repeats the secret")
	}
}

func TestNonFormTokenRequest(t *testing.T) {
	e := newEnv(t, nil)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.url+tokenPath, strings.NewReader(`{"grant_type":"client_credentials"}`))
	req.Header.Set("Content-Type", "application/json")
	if diff := cmp.Diff(oauthErr{400, "invalid_request"}, e.do(t, req).oauth()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestRefresh(t *testing.T) {
	e := newEnv(t, nil)
	client := credentials.Client{Endpoints: e.endpoints(t), ClientID: cliID, Audience: audience, HTTPClient: e.httpClient(false)}
	first := e.signInAlice(t)

	e.clock.Advance(time.Minute) // so the new tokens differ in time too
	tok, err := client.Refresh(testContext(t), first.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken == "" || tok.RefreshToken == first.RefreshToken {
		t.Error("the refresh token was not rotated")
	}
	now := e.clock.Now()
	at, _ := e.verify(t, tok.AccessToken, audience)
	idt, _ := e.verify(t, tok.Extra("id_token").(string), cliID)
	rt := unverifiedClaims(t, tok.RefreshToken)
	got := map[string]any{"access": stable(t, at, now, time.Hour), "id sub": idt["sub"], "id nonce": idt["nonce"],
		"refresh": stable(t, rt, now, DefaultRefreshTokenTTL), "scope": tok.Extra("scope")}
	want := map[string]any{
		"access": map[string]any{"iss": e.url, "sub": aliceID, "oid": aliceID, "aud": audience, "azp": cliID, "name": "Alice Liddell",
			"preferred_username": aliceLogin, "idtyp": "user", "scp": "openid profile"},
		"id sub": aliceID, "id nonce": nil,
		"refresh": map[string]any{"iss": e.url, "sub": aliceID, "aud": e.url + "/token", "client_id": cliID, "scope": "openid profile",
			"pwd": pwdHashOf(t, e)},
		"scope": "openid profile",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refreshed tokens (-want +got):\n%s", diff)
	}

	refresh := func(rt string, kv ...string) response {
		v := url.Values{"grant_type": {"refresh_token"}, "client_id": {cliID}, "refresh_token": {rt}}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return e.post(t, tokenPath, v)
	}
	tests := []struct {
		name string
		form []string
		want oauthErr
	}{
		{"narrower scope", []string{"scope", "openid"}, oauthErr{200, ""}},
		{"scope not granted", []string{"scope", "openid offline_access"}, oauthErr{400, "invalid_scope"}},
		{"other client", []string{"client_id", spClientID}, oauthErr{401, "invalid_client"}},
		{"with a secret", []string{"client_secret", "x"}, oauthErr{401, "invalid_client"}},
		{"other resource", []string{"resource", "kubernetes"}, oauthErr{400, "invalid_target"}},
		{"old token still valid (stateless)", []string{"refresh_token", first.RefreshToken}, oauthErr{200, ""}},
		{"garbage", []string{"refresh_token", "not.a.token"}, oauthErr{400, "invalid_grant"}},
		{"too long", []string{"refresh_token", strings.Repeat("a", 5000)}, oauthErr{400, "invalid_grant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, refresh(tok.RefreshToken, tt.form...).oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	ctx := t.Context()
	revocations := []struct {
		name   string
		revoke func(t *testing.T)
		want   string // in the description
	}{
		{"expiry", func(t *testing.T) { e.clock.Advance(DefaultRefreshTokenTTL) }, "expired"},
		{"password changed", func(t *testing.T) {
			h, _ := HashPassword(alicePW) // even the same password: a new hash
			must(t, e.store.SetPasswordHash(ctx, aliceID, h))
		}, "password was changed or removed"},
		{"password removed", func(t *testing.T) { must(t, e.store.SetPasswordHash(ctx, aliceID, nil)) }, "password was changed or removed"},
		{"user deleted", func(t *testing.T) { must(t, e.store.DeletePrincipal(ctx, aliceID)) }, "no longer exists"},
	}
	for _, tt := range revocations {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := HashPassword(alicePW)
			must(t, e.store.SetPasswordHash(ctx, aliceID, h))
			rt := e.signInAlice(t).RefreshToken
			if r := refresh(rt); r.status != http.StatusOK {
				t.Fatalf("before: %d %s", r.status, r.body)
			}
			tt.revoke(t)
			r := refresh(rt)
			desc, _ := r.json(t)["error_description"].(string)
			if diff := cmp.Diff(oauthErr{400, "invalid_grant"}, r.oauth()); diff != "" || !strings.Contains(desc, tt.want) {
				t.Errorf("(-want +got):\n%s\ndescription %q, want %q", diff, desc, tt.want)
			}
			// The CLI's client sees the error code.
			_, err := client.Refresh(ctx, rt)
			var oe *credentials.OAuthError
			if !errors.As(err, &oe) || oe.Code != "invalid_grant" {
				t.Errorf("credentials.Client.Refresh: %v", err)
			}
		})
	}
}

func pwdHashOf(t *testing.T, e *env) string {
	t.Helper()
	u, err := e.store.GetUserByLogin(t.Context(), aliceLogin)
	if err != nil {
		t.Fatal(err)
	}
	return pwdHash(u.PasswordHash)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestTokenConfusion checks that no token passes for another: a refresh
// token is refused where an access token is wanted, and an access or ID
// token, or a forged token of the wrong type or audience, is refused as a
// refresh token.
func TestTokenConfusion(t *testing.T) {
	e := newEnv(t, nil)
	tr := e.signInAlice(t)
	now := e.clock.Now()
	good := refreshClaims{Issuer: e.url, Subject: aliceID, Audience: e.url + "/token", ClientID: cliID, Scope: "openid",
		IssuedAt: now.Unix(), Expiry: now.Add(time.Hour).Unix(), ID: "x", Pwd: pwdHashOf(t, e), AuthTime: now.Unix()}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	forge := func(key *ecdsa.PrivateKey, kid string, typ jose.ContentType, alg jose.SignatureAlgorithm, modify func(*refreshClaims)) string {
		c := good
		modify(&c)
		var k any = jose.JSONWebKey{Key: key, KeyID: kid}
		if alg == jose.HS256 {
			k = []byte("a shared secret of thirty-two bytes!")
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, (&jose.SignerOptions{}).WithType(typ))
		if err != nil {
			t.Fatal(err)
		}
		tok, err := sign(s, c)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	kid := e.iss.PublicKeys()[0].KeyID
	same := func(*refreshClaims) {}
	tests := []struct {
		name  string
		token string
		want  oauthErr
	}{
		{"forged control: right type, audience and key", forge(e.key, kid, typeRefreshToken, jose.ES256, same), oauthErr{200, ""}},
		{"access token", tr.AccessToken, oauthErr{400, "invalid_grant"}},
		{"ID token", tr.IDToken, oauthErr{400, "invalid_grant"}},
		{"typ at+jwt", forge(e.key, kid, typeAccessToken, jose.ES256, same), oauthErr{400, "invalid_grant"}},
		{"typ JWT", forge(e.key, kid, typeIDToken, jose.ES256, same), oauthErr{400, "invalid_grant"}},
		{"aud the hub", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Audience = audience }), oauthErr{400, "invalid_grant"}},
		{"other issuer", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Issuer = "https://other.example" }), oauthErr{400, "invalid_grant"}},
		{"other key", forge(otherKey, kid, typeRefreshToken, jose.ES256, same), oauthErr{400, "invalid_grant"}},
		{"HMAC", forge(nil, kid, typeRefreshToken, jose.HS256, same), oauthErr{400, "invalid_grant"}},
		{"wrong pwd", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Pwd = "AAAAAAAAAAAAAAAA" }), oauthErr{400, "invalid_grant"}},
		{"no pwd", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Pwd = "" }), oauthErr{400, "invalid_grant"}},
		{"other user", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Subject = bobID }), oauthErr{400, "invalid_grant"}},
		{"service principal", forge(e.key, kid, typeRefreshToken, jose.ES256, func(c *refreshClaims) { c.Subject = spID }), oauthErr{400, "invalid_grant"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {cliID}, "refresh_token": {tt.token}})
			if diff := cmp.Diff(tt.want, r.oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
			}
		})
	}

	// The hub's verifier, configured as the hub configures it for the
	// embedded issuer, accepts only the access token.
	v := e.hubVerifier(t)
	p, err := v.Verify(t.Context(), tr.AccessToken)
	if err != nil {
		t.Fatalf("the hub refuses the access token: %v", err)
	}
	if diff := cmp.Diff(map[string]any{"id": aliceID, "name": "Alice Liddell", "type": identity.TypeUser},
		map[string]any{"id": p.ID, "name": p.Name, "type": p.Type}); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
	for name, tok := range map[string]string{"refresh token": tr.RefreshToken, "ID token": tr.IDToken} {
		var te *identity.TokenError
		if _, err := v.Verify(t.Context(), tok); !errors.As(err, &te) {
			t.Errorf("the hub accepts the %s: %v", name, err)
		}
	}
}

func TestServicePrincipalAtTheHub(t *testing.T) {
	e := newEnv(t, nil)
	r := e.post(t, tokenPath, url.Values{"grant_type": {"client_credentials"}}, spClientID, e.spSecret)
	v := e.hubVerifier(t)
	p, err := v.Verify(t.Context(), r.json(t)["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"id": spID, "name": "CI deployer", "type": identity.TypeServicePrincipal, "groups": 0},
		map[string]any{"id": p.ID, "name": p.Name, "type": p.Type, "groups": len(p.Groups)}); diff != "" {
		t.Errorf("principal (-want +got):\n%s", diff)
	}
}

// hubVerifier verifies tokens as the hub does for its embedded issuer.
func (e *env) hubVerifier(t *testing.T) *identity.Verifier {
	t.Helper()
	v, err := identity.NewVerifier(identity.Config{
		Issuers: []identity.IssuerConfig{{URL: e.url, Audiences: []string{audience}, SigningAlgorithms: []string{"ES256"}, Keys: e.iss.PublicKeys()}},
		Now:     e.clock.Now,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}
