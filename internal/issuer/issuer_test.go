package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

func TestNewValidates(t *testing.T) {
	e := newEnv(t, nil)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	good := Config{URL: "https://hub.example:8443/oidc", Store: e.store, Key: e.key, Audience: audience, CLIClientID: cliID}
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // in the error; "" for none
	}{
		{"valid", func(*Config) {}, ""},
		{"no path", func(c *Config) { c.URL = "https://hub.example" }, ""},
		{"no URL", func(c *Config) { c.URL = "" }, "URL: required"},
		{"http", func(c *Config) { c.URL = "http://hub.example/oidc" }, "not an https URL"},
		{"trailing slash", func(c *Config) { c.URL = "https://hub.example/oidc/" }, "ends in a slash"},
		{"query", func(c *Config) { c.URL = "https://hub.example/oidc?x=1" }, "query"},
		{"fragment", func(c *Config) { c.URL = "https://hub.example/oidc#x" }, "fragment"},
		{"no store", func(c *Config) { c.Store = nil }, "no store"},
		{"no key", func(c *Config) { c.Key = nil }, "no signing key"},
		{"P-384 key", func(c *Config) { c.Key = p384 }, "not a P-256 key"},
		{"no audience", func(c *Config) { c.Audience = "" }, "no audience"},
		{"no CLI client", func(c *Config) { c.CLIClientID = "" }, "no CLI client ID"},
		{"audience is the CLI", func(c *Config) { c.Audience = cliID }, "must differ"},
		{"short access tokens", func(c *Config) { c.AccessTokenTTL = time.Second }, "access token lifetime"},
		{"refresh shorter than access", func(c *Config) { c.RefreshTokenTTL = time.Minute }, "shorter than the access token's"},
		{"long device codes", func(c *Config) { c.DeviceCodeTTL = 2 * time.Hour }, "device code lifetime"},
		{"negative poll interval", func(c *Config) { c.DevicePollInterval = -time.Second }, "poll interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.modify(&cfg)
			_, err := New(cfg, nil)
			if !strings.Contains(fmt.Sprint(err), tt.want) || (tt.want == "") != (err == nil) {
				t.Errorf("New: %v; want an error with %q", err, tt.want)
			}
		})
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get(t, e.url+discoveryPath)
	var got discovery
	if err := json.Unmarshal([]byte(r.body), &got); err != nil {
		t.Fatal(err)
	}
	want := discovery{
		Issuer:                            e.url,
		JWKSURI:                           e.url + "/keys",
		AuthorizationEndpoint:             e.url + "/authorize",
		TokenEndpoint:                     e.url + "/token",
		DeviceAuthorizationEndpoint:       e.url + "/devicecode",
		GrantTypesSupported:               []string{"authorization_code", "refresh_token", "urn:ietf:params:oauth:grant-type:device_code", "client_credentials"},
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		CodeChallengeMethodsSupported:     []string{"S256"},
		IDTokenSigningAlgValuesSupported:  []string{"ES256"},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post", "none"},
		SubjectTypesSupported:             []string{"public"},
		ScopesSupported:                   []string{"openid", "profile", "offline_access", "tether/.default"},
		ClaimsSupported:                   got.ClaimsSupported,
		AuthorizationResponseISS:          true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("discovery (-want +got):\n%s", diff)
	}
	if r.header.Get("Content-Type") != "application/json" {
		t.Errorf("Content-Type %q", r.header.Get("Content-Type"))
	}
	// The CLI's discovery accepts it.
	ep := e.endpoints(t)
	if ep.DeviceAuthorizationURL != want.DeviceAuthorizationEndpoint || ep.AuthorizationURL != want.AuthorizationEndpoint {
		t.Errorf("credentials.Discover: %+v", ep)
	}
}

func TestKeys(t *testing.T) {
	e := newEnv(t, nil)
	r := e.get(t, e.url+keysPath)
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.body), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys, want 1", len(set.Keys))
	}
	k := set.Keys[0]
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.Key.(*ecdsa.PublicKey)
	got := map[string]any{"kid": k.KeyID, "alg": k.Algorithm, "use": k.Use, "public": k.IsPublic(), "key": ok && pub.Equal(&e.key.PublicKey)}
	want := map[string]any{"kid": base64.RawURLEncoding.EncodeToString(tp), "alg": "ES256", "use": "sig", "public": true, "key": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JWKS key (-want +got):\n%s", diff)
	}
	if strings.Contains(r.body, `"d"`) {
		t.Error("the key set holds a private key")
	}
	pk := e.iss.PublicKeys()
	if len(pk) != 1 || pk[0].KeyID != k.KeyID || pk[0].Algorithm != "ES256" || pk[0].Use != "sig" || !pk[0].IsPublic() {
		t.Errorf("PublicKeys: %+v", pk)
	}
}

func TestRouting(t *testing.T) {
	e := newEnv(t, nil)
	tests := []struct {
		name, method, path string
		want               int
	}{
		{"unknown path", http.MethodGet, "/oidc/nothing", http.StatusNotFound},
		{"outside the path", http.MethodGet, "/other/keys", http.StatusNotFound},
		{"GET token", http.MethodGet, "/oidc/token", http.StatusMethodNotAllowed},
		{"DELETE device", http.MethodDelete, "/oidc/device", http.StatusMethodNotAllowed},
		{"HEAD keys", http.MethodHead, "/oidc/keys", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tt.method, e.srv.URL+tt.path, nil)
			if got := e.do(t, req).status; got != tt.want {
				t.Errorf("%s %s: %d, want %d", tt.method, tt.path, got, tt.want)
			}
		})
	}
	// An issuer without a path serves at the root.
	iss, err := New(Config{URL: "https://hub.example", Store: e.store, Key: e.key, Audience: audience, CLIClientID: cliID}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if iss.path != "" || iss.endpoint(tokenPath) != "https://hub.example/token" {
		t.Errorf("path %q, token endpoint %s", iss.path, iss.endpoint(tokenPath))
	}
}

// TestNoSecretsLogged runs every flow, with failures, and checks that the
// log holds no password, secret, code or token.
func TestNoSecretsLogged(t *testing.T) {
	e := newEnv(t, nil)
	secrets := map[string]string{"password": alicePW, "client secret": e.spSecret, "typed password": "hunter2-typed-in-the-login-field"}
	cc := e.post(t, tokenPath, url.Values{"grant_type": {"client_credentials"}}, spClientID, e.spSecret)
	secrets["app access token"] = cc.json(t)["access_token"].(string)
	e.post(t, tokenPath, url.Values{"grant_type": {"client_credentials"}}, spClientID, e.spSecret+"-wrong")
	tr := e.signInAlice(t)
	secrets["access token"], secrets["refresh token"], secrets["ID token"] = tr.AccessToken, tr.RefreshToken, tr.IDToken
	e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {cliID}, "refresh_token": {tr.RefreshToken}})
	e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {cliID}, "refresh_token": {tr.AccessToken}})
	da := e.deviceAuth(t)
	secrets["device code"], secrets["user code"] = da.DeviceCode, strings.ReplaceAll(da.UserCode, "-", "")
	e.pollDevice(t, da.DeviceCode)
	e.submitDevice(t, da.UserCode, "hunter2-typed-in-the-login-field", "x", "approve")
	e.submitDevice(t, da.UserCode, aliceLogin, "wrong "+alicePW, "approve")
	e.submitDevice(t, da.UserCode, aliceLogin, alicePW, "approve")
	e.clock.Advance(10 * time.Second)
	e.pollDevice(t, da.DeviceCode)
	verifier := oauth2.GenerateVerifier()
	q := e.authCode(t, authRequestParams(verifier), alicePW, "approve")
	secrets["auth code"] = q.Get("code")
	e.redeem(t, q.Get("code"), "wrong-"+verifier, testRedirect)
	secrets["verifier"] = verifier

	logs := e.logs.String()
	if !strings.Contains(logs, "token issued") || !strings.Contains(logs, "sign-in failed") {
		t.Fatalf("the log misses events:\n%s", logs)
	}
	for name, s := range secrets {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", name)
		}
	}
}

func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, nil)
	client := e.httpClient(false)
	const workers = 8
	errs := make(chan error, 2*workers) // each worker sends at most two
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for _, req := range []struct {
				path string
				form url.Values
			}{
				{tokenPath, url.Values{"grant_type": {"client_credentials"}, "client_id": {spClientID}, "client_secret": {e.spSecret}}},
				{deviceCodePath, url.Values{"client_id": {cliID}}},
			} {
				resp, err := client.PostForm(e.url+req.path, req.form)
				if err != nil {
					errs <- err
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs <- fmt.Errorf("%s: %s", req.path, resp.Status)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
