package oidcprovider

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	hubAudience = "api://tether-hub"
	tenantID    = "0a1b2c3d-0000-4000-8000-000000000001"
)

// webRedirectURI is the web clients' redirect URI, as a hub's console
// registers it: https, a host and port only known at test time.
const webRedirectURI = "https://127.0.0.1:18443/console/auth/callback"

var (
	aliceGroups = GroupIDs("alice", 3)
	bobGroups   = GroupIDs("bob", 500)
)

// start runs a provider with alice (3 groups), bob (500 groups, over the
// threshold), a service principal and an ES256 client; Close runs at cleanup.
func start(t *testing.T) *Provider {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	p, err := Start(ctx, Config{
		TenantID: tenantID,
		Users: []User{
			{Username: "alice@tether.test", Password: "alice-pw", Name: "Alice", Groups: aliceGroups,
				Claims: map[string]any{"email": "alice@tether.test"}},
			{Username: "bob@tether.test", Password: "bob-pw", Groups: bobGroups},
		},
		Clients: []Client{
			{ID: "deployer", Secret: "deployer-secret", Name: "CI deployer", Groups: GroupIDs("deployer", 2)},
			{ID: "es-cli", IDTokenSigningAlg: "ES256"},
			{ID: "console", Secret: "console-secret", GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken},
				RedirectURIs: []string{webRedirectURI}},
			{ID: "console-public", GrantTypes: []string{GrantAuthorizationCode, GrantRefreshToken}, RedirectURIs: []string{webRedirectURI}},
		},
		Resources: []Resource{{Identifier: hubAudience}, {Identifier: "https://es.tether.test", SigningAlg: "ES256"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", p.tail(40))
		}
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestDiscoveryAndJWKSOverTLS(t *testing.T) {
	p := start(t)
	ctx := t.Context()

	var doc map[string]any
	getJSON(t, p, p.Issuer+"/.well-known/openid-configuration", &doc)
	for key, want := range map[string]any{
		"issuer":                        p.Issuer,
		"token_endpoint":                p.Issuer + "/token",
		"device_authorization_endpoint": p.Issuer + "/device/auth",
		"jwks_uri":                      p.Issuer + "/jwks",
	} {
		if doc[key] != want {
			t.Errorf("discovery %s = %v, want %v", key, doc[key], want)
		}
	}
	if got := doc["code_challenge_methods_supported"]; fmt.Sprint(got) != "[S256]" {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", got)
	}

	keys := jwks(t, p)
	var algs []string
	for _, k := range keys {
		algs = append(algs, k.Alg)
	}
	var raw struct{ Keys []map[string]any }
	getJSON(t, p, p.Issuer+"/jwks", &raw)
	for _, k := range raw.Keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
			if _, ok := k[private]; ok {
				t.Errorf("JWKS key %v publishes private member %q", k["kid"], private)
			}
		}
	}
	slices.Sort(algs)
	if diff := cmp.Diff([]string{"ES256", "RS256"}, algs); diff != "" {
		t.Errorf("JWKS algorithms (-want +got):\n%s", diff)
	}

	// Without the harness's CA the certificate is not trusted.
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.Issuer+"/jwks", nil)
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, err := c.Do(req)
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("GET without the CA: err = %v, want x509.UnknownAuthorityError", err)
	}
	// With it, from the PEM file the provider exposes.
	pemFile, err := os.ReadFile(p.CAFile)
	if err != nil || string(pemFile) != string(p.CAPEM) {
		t.Fatalf("CAFile does not hold CAPEM: %v", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemFile)
	c = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

func TestUserToken(t *testing.T) {
	p := start(t)
	alice, _ := p.User("alice@tether.test")
	toks, err := p.UserToken(t.Context(), "alice@tether.test", "alice-pw", hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	if toks.RefreshToken == "" {
		t.Error("no refresh token")
	}
	keys := jwks(t, p)

	at := verifyJWT(t, keys, toks.AccessToken, "RS256", "at+jwt")
	wantAT := map[string]any{
		"iss": p.Issuer, "aud": hubAudience, "sub": alice.ObjectID, "client_id": HarnessClientID, "azp": HarnessClientID,
		"oid": alice.ObjectID, "tid": tenantID, "idtyp": "user", "name": "Alice",
		"preferred_username": "alice@tether.test", "email": "alice@tether.test", "groups": toAny(aliceGroups),
	}
	if diff := cmp.Diff(wantAT, pick(at, wantAT)); diff != "" {
		t.Errorf("access token claims (-want +got):\n%s", diff)
	}

	id := verifyJWT(t, keys, toks.IDToken, "RS256", "")
	wantID := map[string]any{
		"iss": p.Issuer, "aud": HarnessClientID, "sub": alice.ObjectID, "oid": alice.ObjectID, "tid": tenantID,
		"name": "Alice", "preferred_username": "alice@tether.test", "email": "alice@tether.test",
		"groups": toAny(aliceGroups),
	}
	if diff := cmp.Diff(wantID, pick(id, wantID)); diff != "" {
		t.Errorf("ID token claims (-want +got):\n%s", diff)
	}
	for _, c := range []map[string]any{at, id} {
		if _, ok := c["_claim_names"]; ok {
			t.Errorf("overage claims for a user with %d groups: %v", len(aliceGroups), c)
		}
	}

	// The refresh token works, and its access token is for the same resource.
	refreshed, err := p.Refresh(t.Context(), HarnessClientID, "", toks.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	if got := verifyJWT(t, keys, refreshed.AccessToken, "RS256", "at+jwt"); got["aud"] != hubAudience || got["oid"] != alice.ObjectID {
		t.Errorf("refreshed access token: aud %v, oid %v", got["aud"], got["oid"])
	}
}

func TestSigningAlgorithms(t *testing.T) {
	p := start(t)
	keys := jwks(t, p)
	tests := []struct {
		name             string
		req              AuthCodeRequest
		wantIDAlg, wantA string
	}{
		{"defaults", AuthCodeRequest{}, "RS256", "RS256"},
		{"ES256 ID token", AuthCodeRequest{ClientID: "es-cli"}, "ES256", "RS256"},
		{"ES256 resource", AuthCodeRequest{Audience: "https://es.tether.test"}, "RS256", "ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Username, tt.req.Password = "alice@tether.test", "alice-pw"
			toks, err := p.AuthCodeToken(t.Context(), tt.req)
			if err != nil {
				t.Fatal(err)
			}
			verifyJWT(t, keys, toks.IDToken, tt.wantIDAlg, "")
			verifyJWT(t, keys, toks.AccessToken, tt.wantA, "at+jwt")
		})
	}
}

func TestGroupOverage(t *testing.T) {
	p := start(t)
	ctx := t.Context()
	bob, _ := p.User("bob@tether.test")
	alice, _ := p.User("alice@tether.test")
	toks, err := p.UserToken(ctx, "bob@tether.test", "bob-pw", hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	keys := jwks(t, p)
	wantOverage := map[string]any{
		"oid":            bob.ObjectID,
		"_claim_names":   map[string]any{"groups": "src1"},
		"_claim_sources": map[string]any{"src1": map[string]any{"endpoint": p.GroupsEndpoint(bob.ObjectID)}},
	}
	for name, tok := range map[string]map[string]any{
		"access token": verifyJWT(t, keys, toks.AccessToken, "RS256", "at+jwt"),
		"ID token":     verifyJWT(t, keys, toks.IDToken, "RS256", ""),
	} {
		if diff := cmp.Diff(wantOverage, pick(tok, wantOverage)); diff != "" {
			t.Errorf("%s overage claims (-want +got):\n%s", name, diff)
		}
		if _, ok := tok["groups"]; ok {
			t.Errorf("%s has a groups claim despite the overage", name)
		}
	}

	// The groups endpoint, walked as a hub would: five pages of 100.
	endpoint := p.GroupsEndpoint(bob.ObjectID)
	var got []string
	pages := 0
	for next := endpoint; next != ""; pages++ {
		status, body := groupsRequest(t, p, next, "Bearer "+toks.AccessToken)
		if status != http.StatusOK {
			t.Fatalf("page %d: status %d: %s", pages, status, body)
		}
		var page struct {
			Value    []string `json:"value"`
			NextLink string   `json:"@odata.nextLink"`
		}
		if err := json.Unmarshal(body, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Value) != 100 {
			t.Errorf("page %d has %d groups, want 100", pages, len(page.Value))
		}
		got = append(got, page.Value...)
		next = page.NextLink
		if pages > 10 {
			t.Fatal("the groups endpoint keeps paging")
		}
	}
	if pages != 5 {
		t.Errorf("%d pages, want 5", pages)
	}
	if diff := cmp.Diff(bobGroups, got); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}

	aliceToks, err := p.UserToken(ctx, "alice@tether.test", "alice-pw", hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	spToken, err := p.ClientCredentialsToken(ctx, "deployer", "deployer-secret", hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	deployer, _ := p.Client("deployer")
	tests := []struct {
		name       string
		url        string
		auth       string
		wantStatus int
	}{
		{"no token", endpoint, "", http.StatusUnauthorized},
		{"not a bearer token", endpoint, "Basic Ym9iOmJvYi1wdw==", http.StatusUnauthorized},
		{"garbage", endpoint, "Bearer not-a-jwt", http.StatusUnauthorized},
		{"forged signature", endpoint, "Bearer " + forge(t, toks.AccessToken), http.StatusUnauthorized},
		{"tampered claims", endpoint, "Bearer " + tamper(t, toks.AccessToken, "oid", alice.ObjectID), http.StatusUnauthorized},
		{"ID token", endpoint, "Bearer " + toks.IDToken, http.StatusUnauthorized},
		{"another user's token", endpoint, "Bearer " + aliceToks.AccessToken, http.StatusForbidden},
		{"own token, next page", endpoint + "?$skiptoken=100", "Bearer " + toks.AccessToken, http.StatusOK},
		{"bad skiptoken", endpoint + "?$skiptoken=x", "Bearer " + toks.AccessToken, http.StatusBadRequest},
		{"alice's own groups", p.GroupsEndpoint(alice.ObjectID), "Bearer " + aliceToks.AccessToken, http.StatusOK},
		{"service principal's own groups", p.GroupsEndpoint(deployer.ObjectID), "Bearer " + spToken, http.StatusOK},
		{"service principal, bob's groups", endpoint, "Bearer " + spToken, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := groupsRequest(t, p, tt.url, tt.auth)
			if status != tt.wantStatus {
				t.Errorf("status %d, want %d: %s", status, tt.wantStatus, body)
			}
		})
	}
}

func TestGroupsEndpointRejectsExpiredToken(t *testing.T) {
	p, err := Start(t.Context(), Config{
		TokenTTL: 2 * time.Second, // exp is in whole seconds: valid for 1 to 2 s
		Users:    []User{{Username: "carol", Password: "carol-pw", Groups: GroupIDs("carol", 2)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	carol, _ := p.User("carol")
	toks, err := p.UserToken(t.Context(), "carol", "carol-pw", "")
	if err != nil {
		t.Fatal(err)
	}
	// Valid now, refused once its lifetime has passed.
	deadline := time.Now().Add(10 * time.Second)
	status, body := groupsRequest(t, p, p.GroupsEndpoint(carol.ObjectID), "Bearer "+toks.AccessToken)
	if status != http.StatusOK {
		t.Fatalf("fresh token: status %d: %s", status, body)
	}
	for status == http.StatusOK && time.Now().Before(deadline) {
		select {
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		case <-time.After(200 * time.Millisecond):
		}
		status, body = groupsRequest(t, p, p.GroupsEndpoint(carol.ObjectID), "Bearer "+toks.AccessToken)
	}
	if status != http.StatusUnauthorized || !strings.Contains(string(body), "EXPIRED") {
		t.Errorf("expired token: status %d, body %s; want 401 for expiry", status, body)
	}
}

func TestClientCredentials(t *testing.T) {
	p := start(t)
	deployer, _ := p.Client("deployer")
	tok, err := p.ClientCredentialsToken(t.Context(), "deployer", "deployer-secret", "")
	if err != nil {
		t.Fatal(err)
	}
	claims := verifyJWT(t, jwks(t, p), tok, "RS256", "at+jwt")
	want := map[string]any{
		"iss": p.Issuer, "aud": hubAudience, "sub": "deployer", "client_id": "deployer",
		"oid": deployer.ObjectID, "tid": tenantID, "idtyp": "app", "app_displayname": "CI deployer",
		"groups": toAny(deployer.Groups),
	}
	if diff := cmp.Diff(want, pick(claims, want)); diff != "" {
		t.Errorf("client credentials claims (-want +got):\n%s", diff)
	}

	_, err = p.ClientCredentialsToken(t.Context(), "deployer", "wrong", "")
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "invalid_client" {
		t.Errorf("wrong secret: err = %v, want invalid_client", err)
	}
	_, err = p.ClientCredentialsToken(t.Context(), "deployer", "deployer-secret", "api://unknown")
	if !errors.As(err, &te) || te.Code != "invalid_target" {
		t.Errorf("unknown audience: err = %v, want invalid_target", err)
	}
}

func TestDeviceCode(t *testing.T) {
	p := start(t)
	ctx := t.Context()
	alice, _ := p.User("alice@tether.test")

	da, err := p.StartDeviceAuthorization(ctx, "", hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	if da.VerificationURI != p.Issuer+"/device" || da.Interval != 1 || da.UserCode == "" {
		t.Errorf("device authorization response %+v", da)
	}
	// Nothing approved yet.
	_, err = p.tokenRequest(ctx, HarnessClientID, "", map[string][]string{"grant_type": {GrantDeviceCode}, "device_code": {da.DeviceCode}})
	var te *TokenError
	if !errors.As(err, &te) || te.Code != "authorization_pending" {
		t.Fatalf("before approval: err = %v, want authorization_pending", err)
	}

	if err := p.DeviceLogin(ctx, DeviceAuthorization{VerificationURI: da.VerificationURI, UserCode: da.UserCode}, "alice@tether.test", "alice-pw"); err != nil {
		t.Fatal(err)
	}
	toks, err := p.PollDeviceToken(ctx, "", da)
	if err != nil {
		t.Fatal(err)
	}
	keys := jwks(t, p)
	at := verifyJWT(t, keys, toks.AccessToken, "RS256", "at+jwt")
	id := verifyJWT(t, keys, toks.IDToken, "RS256", "")
	if at["oid"] != alice.ObjectID || at["aud"] != hubAudience || id["oid"] != alice.ObjectID {
		t.Errorf("device tokens: access token oid %v aud %v, ID token oid %v", at["oid"], at["aud"], id["oid"])
	}
	if toks.RefreshToken == "" {
		t.Error("no refresh token")
	}

	// A used code cannot be approved again.
	if err := p.DeviceLogin(ctx, *da, "alice@tether.test", "alice-pw"); err == nil {
		t.Error("approving a used user code succeeded")
	}
}

func TestLoginRefusals(t *testing.T) {
	p := start(t)
	ctx := t.Context()
	tests := []struct {
		name, user, password, wantErr string
	}{
		{"wrong password", "alice@tether.test", "nope", "Invalid username or password"},
		{"unknown user", "mallory@tether.test", "alice-pw", "Invalid username or password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := p.UserToken(ctx, tt.user, tt.password, "")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("auth code: err = %v, want %q", err, tt.wantErr)
			}
			da, err := p.StartDeviceAuthorization(ctx, "", "")
			if err != nil {
				t.Fatal(err)
			}
			err = p.DeviceLogin(ctx, *da, tt.user, tt.password)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("device: err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	t.Run("wrong user code", func(t *testing.T) {
		err := p.DeviceLogin(ctx, DeviceAuthorization{VerificationURI: p.Issuer + "/device", UserCode: "BCDF-GHJK"}, "alice@tether.test", "alice-pw")
		if err == nil || !strings.Contains(err.Error(), "incorrect") {
			t.Errorf("err = %v, want the page's 'incorrect' message", err)
		}
	})
}

// TestWebClients signs in to a web application such as the hub's console:
// an https redirect URI (its host and port known only when the test runs),
// a confidential client (client_secret_basic) or a public one (PKCE alone),
// the console's scopes and no resource parameter. The access token is for
// the default resource, the ID token for the client, and a refresh token
// comes along.
func TestWebClients(t *testing.T) {
	p := start(t)
	keys := jwks(t, p)
	alice, _ := p.User("alice@tether.test")
	tests := []struct {
		name    string
		req     AuthCodeRequest
		wantErr string // empty: signed in
	}{
		{"confidential", AuthCodeRequest{ClientID: "console", ClientSecret: "console-secret"}, ""},
		{"public", AuthCodeRequest{ClientID: "console-public"}, ""},
		{"wrong secret", AuthCodeRequest{ClientID: "console", ClientSecret: "guess"}, "invalid_client"},
		{"confidential without its secret", AuthCodeRequest{ClientID: "console"}, "invalid_client"},
		{"unregistered redirect URI", AuthCodeRequest{ClientID: "console", ClientSecret: "console-secret",
			RedirectURI: "https://127.0.0.1:18444/console/auth/callback"}, "redirect_uri"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Username, tt.req.Password, tt.req.Scope = "alice@tether.test", "alice-pw", "openid profile offline_access"
			toks, err := p.AuthCodeToken(t.Context(), tt.req)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			at := verifyJWT(t, keys, toks.AccessToken, "RS256", "at+jwt")
			wantAT := map[string]any{"aud": hubAudience, "oid": alice.ObjectID, "azp": tt.req.ClientID, "client_id": tt.req.ClientID, "name": "Alice"}
			if diff := cmp.Diff(wantAT, pick(at, wantAT)); diff != "" {
				t.Errorf("access token claims (-want +got):\n%s", diff)
			}
			id := verifyJWT(t, keys, toks.IDToken, "RS256", "")
			if id["aud"] != tt.req.ClientID || id["oid"] != alice.ObjectID {
				t.Errorf("ID token: aud %v, oid %v; want %s, %s", id["aud"], id["oid"], tt.req.ClientID, alice.ObjectID)
			}
			if toks.RefreshToken == "" {
				t.Error("no refresh token")
			}
			refreshed, err := p.Refresh(t.Context(), tt.req.ClientID, tt.req.ClientSecret, toks.RefreshToken)
			if err != nil {
				t.Fatal(err)
			}
			if got := verifyJWT(t, keys, refreshed.AccessToken, "RS256", "at+jwt"); got["aud"] != hubAudience {
				t.Errorf("refreshed access token: aud %v, want %s", got["aud"], hubAudience)
			}
		})
	}
}

func TestListenHost(t *testing.T) {
	// Any address of this machine works, not only 127.0.0.1; the whole of
	// 127.0.0.0/8 is local on Linux.
	p, err := Start(t.Context(), Config{Host: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if !strings.HasPrefix(p.Issuer, "https://127.0.0.2:") {
		t.Errorf("issuer %s, want https://127.0.0.2:PORT", p.Issuer)
	}
	var doc map[string]any
	getJSON(t, p, p.Issuer+"/.well-known/openid-configuration", &doc)
	if doc["issuer"] != p.Issuer {
		t.Errorf("discovery issuer %v, want %s", doc["issuer"], p.Issuer)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	p, err := Start(t.Context(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	pid, dir, addr := p.Pid(), p.Dir, strings.TrimPrefix(p.Issuer, "https://")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("provider process %d still exists after Close (kill 0: %v)", pid, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("provider directory %s still exists: %v", dir, err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections", addr)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"user without password", Config{Users: []User{{Username: "a"}}}, "needs a username and a password"},
		{"duplicate user", Config{Users: []User{{Username: "a", Password: "p"}, {Username: "A", Password: "p"}}}, "listed twice"},
		{"bad tenant", Config{TenantID: "contoso"}, "not a UUID"},
		{"bad object ID", Config{Users: []User{{Username: "a", Password: "p", ObjectID: "x"}}}, "not a UUID"},
		{"shared object ID", Config{Users: []User{{Username: "a", Password: "p", ObjectID: tenantID}}, Clients: []Client{{ID: "c", ObjectID: tenantID}}}, "same object ID"},
		{"public client credentials", Config{Clients: []Client{{ID: "c", GrantTypes: []string{GrantClientCredentials}}}}, "need a secret"},
		{"unknown grant", Config{Clients: []Client{{ID: "c", GrantTypes: []string{"password"}}}}, "unknown grant type"},
		{"harness client ID", Config{Clients: []Client{{ID: HarnessClientID}}}, "listed twice"},
		{"public web and native redirect URIs", Config{Clients: []Client{{ID: "c", RedirectURIs: []string{webRedirectURI, HarnessRedirectURI}}}}, "not both"},
		{"relative redirect URI", Config{Clients: []Client{{ID: "c", RedirectURIs: []string{"/console/auth/callback"}}}}, "not an absolute URI"},
		{"relative resource", Config{Resources: []Resource{{Identifier: "hub"}}}, "absolute URI"},
		{"bad algorithm", Config{Resources: []Resource{{Identifier: "api://x", SigningAlg: "HS256"}}}, "neither RS256 nor ES256"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(t.Context(), tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Start: err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// ---- helpers --------------------------------------------------------------

type jwk struct {
	Kty, Kid, Alg, Use string
	N, E               string // RSA
	Crv, X, Y          string // EC
}

func jwks(t *testing.T, p *Provider) []jwk {
	t.Helper()
	var set struct{ Keys []jwk }
	getJSON(t, p, p.Issuer+"/jwks", &set)
	return set.Keys
}

func getJSON(t *testing.T, p *Provider, url string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.httpClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func groupsRequest(t *testing.T, p *Provider, url, auth string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(`{"securityEnabledOnly":false}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := p.httpClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("401 without a Bearer challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}
	return resp.StatusCode, body
}

// verifyJWT checks the token's signature against keys by hand (RS256 with
// crypto/rsa, ES256 with crypto/ecdsa), its alg and typ headers (ID tokens
// have no typ, access tokens "at+jwt") and its expiry, and returns its claims.
func verifyJWT(t *testing.T, keys []jwk, token, wantAlg, wantTyp string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %.40q", token)
	}
	var header struct{ Alg, Typ, Kid string }
	decodeSegment(t, parts[0], &header)
	if header.Alg != wantAlg || header.Typ != wantTyp {
		t.Errorf("JWT header alg %q typ %q, want %q %q", header.Alg, header.Typ, wantAlg, wantTyp)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	i := slices.IndexFunc(keys, func(k jwk) bool { return k.Kid == header.Kid })
	if i < 0 {
		t.Fatalf("JWT key %q is not in the JWKS", header.Kid)
	}
	k := keys[i]
	switch {
	case header.Alg == "RS256" && k.Kty == "RSA":
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(b64(t, k.N)), E: int(new(big.Int).SetBytes(b64(t, k.E)).Int64())}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
			t.Fatalf("RS256 signature: %v", err)
		}
	case header.Alg == "ES256" && k.Kty == "EC" && k.Crv == "P-256":
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, b64(t, k.X)...), b64(t, k.Y)...))
		if err != nil {
			t.Fatal(err)
		}
		if len(sig) != 64 || !ecdsa.Verify(pub, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			t.Fatal("ES256 signature does not verify")
		}
	default:
		t.Fatalf("JWT alg %s with a %s key", header.Alg, k.Kty)
	}
	var claims map[string]any
	decodeSegment(t, parts[1], &claims)
	if exp, _ := claims["exp"].(float64); time.Unix(int64(exp), 0).Before(time.Now()) {
		t.Errorf("JWT expired at %v", exp)
	}
	return claims
}

// forge signs the token's header and claims again with a key the provider
// never had, keeping the provider's key ID.
func forge(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signingInput := parts[0] + "." + parts[1]
	digest := sha256.Sum256([]byte(signingInput))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// tamper changes one claim and keeps the original signature.
func tamper(t *testing.T, token, claim string, value any) string {
	t.Helper()
	parts := strings.Split(token, ".")
	var claims map[string]any
	decodeSegment(t, parts[1], &claims)
	claims[claim] = value
	payload, _ := json.Marshal(claims)
	return parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2]
}

func decodeSegment(t *testing.T, seg string, out any) {
	t.Helper()
	if err := json.Unmarshal(b64(t, seg), out); err != nil {
		t.Fatal(err)
	}
}

func b64(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pick returns the entries of got whose keys are in want.
func pick(got, want map[string]any) map[string]any {
	out := map[string]any{}
	for k := range want {
		if v, ok := got[k]; ok {
			out[k] = v
		}
	}
	return out
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
