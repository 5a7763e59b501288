package credentials

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"tether.dev/tether/test/oidcprovider"
)

var devicePrompt = regexp.MustCompile(`open (\S+) and enter the code (\S+)`)

func TestDeviceCodeEndToEnd(t *testing.T) {
	ctx := testContext(t)
	cache := newCache(t)
	prompt := newPromptWriter()
	src, err := New(Config{
		Issuer: provider.Issuer, ClientID: cliClientID, Audience: hubAudience,
		Cache: cache, HTTPClient: issuerClient(), Interactive: true, Prompt: prompt,
	})
	if err != nil {
		t.Fatal(err)
	}

	approved := make(chan error, 1)
	userCtx, stopUser := context.WithCancel(ctx)
	defer stopUser()
	go func() { // the user at the browser
		var out string
		select {
		case out = <-prompt.first:
		case <-userCtx.Done():
			approved <- userCtx.Err()
			return
		}
		m := devicePrompt.FindStringSubmatch(out)
		if m == nil {
			approved <- errors.New("prompt without URI and code: " + out)
			return
		}
		approved <- provider.DeviceLogin(userCtx, oidcprovider.DeviceAuthorization{VerificationURI: m[1], UserCode: m[2]}, alice, alicePW)
	}()
	tok, err := src.Get(ctx)
	if err != nil {
		stopUser() // the prompt may never come
	}
	if aerr := <-approved; aerr != nil && err == nil {
		t.Fatalf("device login: %v", aerr)
	}
	if err != nil {
		t.Fatal(err)
	}

	at := claims(t, tok.AccessToken)
	got := map[string]any{"aud": at["aud"], "preferred_username": at["preferred_username"], "idtyp": at["idtyp"],
		"id token aud": claims(t, tok.IDToken)["aud"], "refresh token": tok.RefreshToken != ""}
	want := map[string]any{"aud": hubAudience, "preferred_username": alice, "idtyp": "user",
		"id token aud": cliClientID, "refresh token": true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
	out := prompt.String()
	for name, secret := range map[string]string{"access": tok.AccessToken, "refresh": tok.RefreshToken, "id": tok.IDToken} {
		if strings.Contains(out, secret) {
			t.Errorf("the prompt shows the %s token", name)
		}
	}
	if strings.Contains(tok.String(), tok.AccessToken) {
		t.Error("Token.String shows the access token")
	}

	// A second Get is served from the cache without a prompt.
	again, err := src.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tok.AccessToken, again.AccessToken); diff != "" {
		t.Errorf("second Get (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(out, prompt.String()); diff != "" {
		t.Errorf("second Get prompted (-want +got):\n%s", diff)
	}
}

// browserFunc is what OpenBrowser does with the authorization URL, playing
// the user and the browser; it returns the status of the loopback callback.
type browserFunc func(ctx context.Context, authURL string) (int, error)

func TestAuthCodeEndToEnd(t *testing.T) {
	tests := []struct {
		name       string
		browse     browserFunc
		wantStatus int
		wantErr    string // empty: success
	}{
		{
			name:       "sign in",
			browse:     signInAndFollow(nil),
			wantStatus: http.StatusOK,
		},
		{
			name: "wrong state refused",
			browse: signInAndFollow(func(q url.Values) {
				q.Set("state", "forged")
			}),
			wantStatus: http.StatusBadRequest,
			wantErr:    "wrong state",
		},
		{
			name:       "access denied surfaced",
			browse:     abortAndFollow,
			wantStatus: http.StatusBadRequest,
			wantErr:    "access_denied",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			c := &Client{ClientID: cliClientID, Audience: hubAudience, Scopes: []string{"openid", "profile"}, HTTPClient: issuerClient()}
			var err error
			if c.Endpoints, err = Discover(ctx, c.HTTPClient, provider.Issuer); err != nil {
				t.Fatal(err)
			}
			var status int
			var browseErr error
			tok, err := c.AuthCode(ctx, AuthCodeOptions{
				OpenBrowser: func(u string) error {
					status, browseErr = tc.browse(ctx, u)
					return nil
				},
				Prompt: io.Discard,
			})
			if browseErr != nil {
				t.Fatalf("browser: %v", browseErr)
			}
			if diff := cmp.Diff(tc.wantStatus, status); diff != "" {
				t.Errorf("callback status (-want +got):\n%s", diff)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := fromOAuth2(tok)
			at := claims(t, got.AccessToken)
			if diff := cmp.Diff([]any{hubAudience, alice, true, true}, []any{at["aud"], at["preferred_username"], got.IDToken != "", got.RefreshToken != ""}); diff != "" {
				t.Errorf("token: aud, user, id token, refresh token (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAuthCodeListensOnLoopbackOnly(t *testing.T) {
	ctx := testContext(t)
	c := &Client{ClientID: cliClientID, Endpoints: Endpoints{Issuer: provider.Issuer, AuthorizationURL: provider.Issuer + "/auth", TokenURL: provider.Issuer + "/token"}}
	var redirect string
	_, err := c.AuthCode(ctx, AuthCodeOptions{OpenBrowser: func(u string) error {
		pu, err := url.Parse(u)
		if err != nil {
			return err
		}
		redirect = pu.Query().Get("redirect_uri")
		// Answer as the server would for an unknown user, to end the flow.
		return getStatusOnly(ctx, redirect+"?error=login_required&state="+url.QueryEscape(pu.Query().Get("state")))
	}})
	if err == nil || !strings.Contains(err.Error(), "login_required") {
		t.Fatalf("error %v, want login_required", err)
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+/callback$`).MatchString(redirect) {
		t.Errorf("redirect_uri %q is not a loopback callback", redirect)
	}
}

// signInAndFollow signs alice in on the provider's pages, lets edit change
// the redirect's query, and follows the redirect to the loopback listener.
func signInAndFollow(edit func(url.Values)) browserFunc {
	return func(ctx context.Context, authURL string) (int, error) {
		redirect, err := provider.PasswordLogin(ctx, authURL, alice, alicePW)
		if err != nil {
			return 0, err
		}
		if edit != nil {
			q := redirect.Query()
			edit(q)
			redirect.RawQuery = q.Encode()
		}
		return getStatus(ctx, redirect.String())
	}
}

var abortForm = regexp.MustCompile(`<form id="abort" method="post" action="([^"]+)"`)

// abortAndFollow opens the authorization URL as a browser, presses the
// provider's Cancel button and follows its redirect to the loopback
// listener, which then carries error=access_denied.
func abortAndFollow(ctx context.Context, authURL string) (int, error) {
	jar, _ := cookiejar.New(nil)
	issuer, _ := url.Parse(provider.Issuer)
	b := issuerClient()
	b.Jar = jar
	b.CheckRedirect = func(req *http.Request, _ []*http.Request) error {
		if req.URL.Host != issuer.Host {
			return http.ErrUseLastResponse
		}
		return nil
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
	resp, err := b.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := abortForm.FindSubmatch(body)
	if m == nil {
		return 0, errors.New("no abort form on the login page")
	}
	action, _ := resp.Request.URL.Parse(string(m[1]))
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, action.String(), nil)
	resp, err = b.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		return 0, err
	}
	if loc.Query().Get("error") != "access_denied" {
		return 0, errors.New("the provider redirected to " + loc.Redacted())
	}
	return getStatus(ctx, loc.String())
}

func getStatus(ctx context.Context, u string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func getStatusOnly(ctx context.Context, u string) error {
	_, err := getStatus(ctx, u)
	return err
}

func TestClientCredentials(t *testing.T) {
	ctx := testContext(t)
	cache := newCache(t)
	clk := &clock{}
	newSource := func(secret string) *Source {
		s, err := New(Config{Issuer: provider.Issuer, ClientID: spClientID, ClientSecret: secret, Audience: hubAudience,
			Cache: cache, HTTPClient: issuerClient(), Now: clk.Now})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	clk.Set(time.Now())
	tok, err := newSource(spSecret).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	at := claims(t, tok.AccessToken)
	if diff := cmp.Diff([]any{hubAudience, "app", spClientID, ""}, []any{at["aud"], at["idtyp"], at["sub"], tok.RefreshToken}); diff != "" {
		t.Errorf("token: aud, idtyp, sub, refresh token (-want +got):\n%s", diff)
	}

	// The secret is not in the cache; the token is.
	entries, err := cache.List()
	if err != nil || len(entries) != 1 {
		t.Fatalf("cache entries %v, %v", entries, err)
	}
	raw, err := os.ReadFile(cache.path(entries[0].Key))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), spSecret) {
		t.Error("the cache file holds the client secret")
	}
	if diff := cmp.Diff(GrantClientCredentials, entries[0].Grant); diff != "" {
		t.Errorf("grant (-want +got):\n%s", diff)
	}

	// Without the secret the cached token is used while valid...
	cached, err := newSource("").Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cached.AccessToken != tok.AccessToken {
		t.Error("a valid cached service principal token was not used")
	}
	// ...and after its expiry Get asks for the secret.
	clk.Set(tok.Expiry.Add(time.Minute))
	_, err = newSource("").Get(ctx)
	if !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), "does not store client secrets") {
		t.Fatalf("error %v, want ErrLoginRequired asking for the secret", err)
	}
	// With the secret supplied again it re-authenticates.
	renewed, err := newSource(spSecret).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.AccessToken == tok.AccessToken {
		t.Error("the expired token was handed out again")
	}

	// A wrong secret is the issuer's invalid_client.
	cache2 := newCache(t)
	bad, _ := New(Config{Issuer: provider.Issuer, ClientID: spClientID, ClientSecret: "wrong", Cache: cache2, HTTPClient: issuerClient()})
	_, err = bad.Get(ctx)
	var oe *OAuthError
	if !errors.As(err, &oe) || oe.Code != "invalid_client" {
		t.Fatalf("error %v, want invalid_client", err)
	}
}

// An issuer that is briefly unavailable while the user signs in (a hub
// replica whose database restarts) does not end the device-code polling.
func TestDevicePollingOutlastsAnUnavailableIssuer(t *testing.T) {
	var polls int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		polls++
		w.Header().Set("Content-Type", "application/json")
		switch polls {
		case 1:
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"authorization_pending"}`)
		case 2:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"error":"temporarily_unavailable","error_description":"the hub cannot reach its database just now"}`)
		default:
			io.WriteString(w, `{"access_token":"at","token_type":"Bearer","expires_in":3600}`)
		}
	}))
	defer srv.Close()
	cfg := &oauth2.Config{ClientID: "c", Endpoint: oauth2.Endpoint{TokenURL: srv.URL, AuthStyle: oauth2.AuthStyleInParams}}
	da := &oauth2.DeviceAuthResponse{DeviceCode: "dc", Interval: 1, Expiry: time.Now().Add(time.Minute)}
	tok, err := (&Client{}).pollDevice(testContext(t), cfg, da)
	if err != nil || tok.AccessToken != "at" || polls != 3 {
		t.Fatalf("pollDevice = %v, %v after %d polls; want the token after 3", tok, err, polls)
	}
}
