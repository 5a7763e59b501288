package oidcprovider

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"golang.org/x/net/html"
)

// maxPage bounds what the browser helpers read of one page.
const maxPage = 1 << 20

// Tokens is a token endpoint response.
type Tokens struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
}

// TokenError is an OAuth error answer from the token or device
// authorization endpoint, such as "invalid_client" or
// "authorization_pending".
type TokenError struct {
	Status      int
	Code        string `json:"error"`
	Description string `json:"error_description"`
}

func (e *TokenError) Error() string {
	return fmt.Sprintf("oidc provider: %s (%s, HTTP %d)", e.Code, e.Description, e.Status)
}

// DeviceAuthorization is a device authorization response (RFC 8628 3.2).
// DeviceLogin needs only VerificationURI and UserCode.
type DeviceAuthorization struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int    `json:"expires_in"`
	Interval                int    `json:"interval"`
}

// AuthCodeRequest says whom AuthCodeToken signs in, for which client.
type AuthCodeRequest struct {
	// ClientID is the client; empty means HarnessClientID.
	ClientID string
	// ClientSecret authenticates a confidential client.
	ClientSecret string
	// RedirectURI is one of the client's redirect URIs. Empty means its
	// first.
	RedirectURI string
	// Username and Password sign in on the login page.
	Username, Password string
	// Audience is the resource parameter. Empty means the default resource.
	Audience string
	// Scope is the scope parameter. Empty means "openid profile".
	Scope string
}

// UserToken signs username in with the authorization code flow and PKCE on
// the harness client's loopback redirect, and returns the tokens: a JWT
// access token for audience (empty: the default resource), an ID token and
// a refresh token.
func (p *Provider) UserToken(ctx context.Context, username, password, audience string) (*Tokens, error) {
	return p.AuthCodeToken(ctx, AuthCodeRequest{Username: username, Password: password, Audience: audience})
}

// AuthCodeToken runs the authorization code flow with PKCE (S256): it builds
// the authorization URL, signs in with PasswordLogin, checks state, and
// redeems the code at the token endpoint. It checks the ID token's nonce.
func (p *Provider) AuthCodeToken(ctx context.Context, r AuthCodeRequest) (*Tokens, error) {
	if r.ClientID == "" {
		r.ClientID = HarnessClientID
	}
	if r.RedirectURI == "" {
		c, ok := p.Client(r.ClientID)
		if !ok {
			return nil, fmt.Errorf("oidc provider: no client %q", r.ClientID)
		}
		r.RedirectURI = c.RedirectURIs[0]
	}
	if r.Scope == "" {
		r.Scope = "openid profile"
	}
	verifier, state, nonce := randomString(), randomString(), randomString()
	challenge := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {r.ClientID},
		"redirect_uri":          {r.RedirectURI},
		"scope":                 {r.Scope},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(challenge[:])},
		"code_challenge_method": {"S256"},
	}
	if r.Audience != "" {
		q.Set("resource", r.Audience)
	}
	redirect, err := p.PasswordLogin(ctx, p.endpoints.Authorization+"?"+q.Encode(), r.Username, r.Password)
	if err != nil {
		return nil, err
	}
	got := redirect.Query()
	if e := got.Get("error"); e != "" {
		return nil, fmt.Errorf("oidc provider: authorization failed: %s: %s", e, got.Get("error_description"))
	}
	if got.Get("state") != state {
		return nil, errors.New("oidc provider: authorization response has the wrong state")
	}
	if got.Get("iss") != p.Issuer {
		return nil, fmt.Errorf("oidc provider: authorization response names issuer %q", got.Get("iss"))
	}
	form := url.Values{
		"grant_type":    {GrantAuthorizationCode},
		"code":          {got.Get("code")},
		"redirect_uri":  {r.RedirectURI},
		"code_verifier": {verifier},
	}
	if r.Audience != "" {
		form.Set("resource", r.Audience)
	}
	tokens, err := p.tokenRequest(ctx, r.ClientID, r.ClientSecret, form)
	if err != nil {
		return nil, err
	}
	if tokens.IDToken != "" {
		claims, err := DecodeClaims(tokens.IDToken)
		if err != nil {
			return nil, fmt.Errorf("oidc provider: ID token: %w", err)
		}
		if claims["nonce"] != nonce {
			return nil, errors.New("oidc provider: ID token has the wrong nonce")
		}
	}
	return tokens, nil
}

// ClientCredentialsToken gets an access token for a confidential client by
// the client credentials grant, for audience (empty: the default resource).
func (p *Provider) ClientCredentialsToken(ctx context.Context, clientID, secret, audience string) (string, error) {
	form := url.Values{"grant_type": {GrantClientCredentials}}
	if audience != "" {
		form.Set("resource", audience)
	}
	t, err := p.tokenRequest(ctx, clientID, secret, form)
	if err != nil {
		return "", err
	}
	return t.AccessToken, nil
}

// Refresh redeems a refresh token. A public client passes no secret.
func (p *Provider) Refresh(ctx context.Context, clientID, secret, refreshToken string) (*Tokens, error) {
	return p.tokenRequest(ctx, clientID, secret, url.Values{
		"grant_type":    {GrantRefreshToken},
		"refresh_token": {refreshToken},
	})
}

// StartDeviceAuthorization asks for a device code for a public client (empty:
// HarnessClientID), as `tether login --device` does.
func (p *Provider) StartDeviceAuthorization(ctx context.Context, clientID, audience string) (*DeviceAuthorization, error) {
	if clientID == "" {
		clientID = HarnessClientID
	}
	form := url.Values{"client_id": {clientID}, "scope": {"openid profile"}}
	if audience != "" {
		form.Set("resource", audience)
	}
	var da DeviceAuthorization
	if err := p.post(ctx, p.endpoints.DeviceAuthorization, "", "", form, &da); err != nil {
		return nil, err
	}
	return &da, nil
}

// PollDeviceToken polls the token endpoint for a public client's device code
// at the interval the provider asked for, until the user has approved (the
// tokens), denied or let it expire (a *TokenError), or ctx ends.
func (p *Provider) PollDeviceToken(ctx context.Context, clientID string, da *DeviceAuthorization) (*Tokens, error) {
	if clientID == "" {
		clientID = HarnessClientID
	}
	interval := time.Duration(max(da.Interval, 1)) * time.Second
	deadline := time.Now().Add(time.Duration(da.ExpiresIn) * time.Second)
	form := url.Values{"grant_type": {GrantDeviceCode}, "device_code": {da.DeviceCode}}
	for {
		t, err := p.tokenRequest(ctx, clientID, "", form)
		var te *TokenError
		switch {
		case err == nil:
			return t, nil
		case errors.As(err, &te) && te.Code == "slow_down":
			interval += 5 * time.Second
		case errors.As(err, &te) && te.Code == "authorization_pending":
		default:
			return nil, err
		}
		if time.Now().Add(interval).After(deadline) {
			return nil, errors.New("oidc provider: the device code expired before it was approved")
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(interval):
		}
	}
}

// DeviceLogin approves a device code as the user would in a browser: it
// opens the verification page, enters the user code, confirms, signs in as
// username and consents. It returns once the provider shows its success page.
func (p *Provider) DeviceLogin(ctx context.Context, da DeviceAuthorization, username, password string) error {
	b := p.newBrowser()
	pg, err := b.get(ctx, da.VerificationURI)
	if err != nil {
		return err
	}
	if pg, err = b.submit(ctx, pg, "op.deviceInputForm", url.Values{"user_code": {da.UserCode}}); err != nil {
		return err
	}
	if pg, err = b.submit(ctx, pg, "op.deviceConfirmForm", nil); err != nil {
		return err
	}
	if pg, err = b.signIn(ctx, pg, username, password); err != nil {
		return err
	}
	if pg.redirect != nil {
		return fmt.Errorf("oidc provider: device login redirected to %s", pg.redirect.Redacted())
	}
	if findByID(pg.doc, "success") == nil {
		return pg.unexpected("the device success page")
	}
	return nil
}

// PasswordLogin plays the browser for an authorization request: it opens
// authURL, signs in as username on the login page and consents, and returns
// the URL the provider then redirects to (the client's redirect URI with
// code and state, or error) without following it.
func (p *Provider) PasswordLogin(ctx context.Context, authURL, username, password string) (*url.URL, error) {
	b := p.newBrowser()
	pg, err := b.get(ctx, authURL)
	if err != nil {
		return nil, err
	}
	if pg, err = b.signIn(ctx, pg, username, password); err != nil {
		return nil, err
	}
	if pg.redirect == nil {
		return nil, pg.unexpected("a redirect to the client")
	}
	return pg.redirect, nil
}

// browser is an HTTP client with cookies that follows redirects within the
// provider and stops at the first one that leaves it.
type browser struct {
	p *Provider
	c *http.Client
}

// page is one response the browser ended on.
type page struct {
	url      *url.URL
	status   int
	doc      *html.Node
	redirect *url.URL // set when the provider redirected elsewhere
}

func (p *Provider) newBrowser() *browser {
	jar, _ := cookiejar.New(nil) // never fails without options
	c := p.httpClient(jar)
	issuer, _ := url.Parse(p.Issuer)
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Scheme != issuer.Scheme || req.URL.Host != issuer.Host {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		return nil
	}
	return &browser{p: p, c: c}
}

func (b *browser) get(ctx context.Context, u string) (*page, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	return b.do(req)
}

// submit fills the form with this id on pg with values, keeping its other
// fields (hidden ones included) as they are, and submits it. Every name in
// values must be a field of the form.
func (b *browser) submit(ctx context.Context, pg *page, formID string, values url.Values) (*page, error) {
	form := findByID(pg.doc, formID)
	if form == nil || form.Data != "form" {
		return nil, pg.unexpected(fmt.Sprintf("form %q", formID))
	}
	action, err := pg.url.Parse(attr(form, "action"))
	if err != nil {
		return nil, fmt.Errorf("oidc provider: form %q: action: %w", formID, err)
	}
	fields := url.Values{}
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == "input" && attr(n, "name") != "" {
			fields.Set(attr(n, "name"), attr(n, "value"))
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(form)
	for k, v := range values {
		if _, ok := fields[k]; !ok {
			return nil, fmt.Errorf("oidc provider: form %q on %s has no field %q", formID, pg.url.Path, k)
		}
		fields[k] = v
	}
	method := strings.ToUpper(attr(form, "method"))
	if method != http.MethodPost {
		return nil, fmt.Errorf("oidc provider: form %q uses method %q", formID, method)
	}
	req, err := http.NewRequestWithContext(ctx, method, action.String(), strings.NewReader(fields.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

// signIn answers the login and consent pages until the flow leaves them.
func (b *browser) signIn(ctx context.Context, pg *page, username, password string) (*page, error) {
	loggedIn := false
	for range 5 {
		var err error
		switch {
		case pg.redirect != nil:
			return pg, nil
		case findByID(pg.doc, "login") != nil:
			if loggedIn {
				return nil, pg.unexpected("no second login page")
			}
			loggedIn = true
			if pg, err = b.submit(ctx, pg, "login", url.Values{"username": {username}, "password": {password}}); err != nil {
				return nil, err
			}
			if pg.status == http.StatusUnauthorized {
				return nil, fmt.Errorf("oidc provider: login as %q refused: %s", username, pageError(pg.doc))
			}
		case findByID(pg.doc, "consent") != nil:
			if pg, err = b.submit(ctx, pg, "consent", nil); err != nil {
				return nil, err
			}
		default:
			return pg, nil
		}
	}
	return nil, pg.unexpected("the end of the sign-in")
}

func (b *browser) do(req *http.Request) (*page, error) {
	resp, err := b.c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidc provider: %w", err)
	}
	defer resp.Body.Close()
	pg := &page{url: resp.Request.URL, status: resp.StatusCode}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		loc, err := resp.Location()
		if err != nil {
			return nil, fmt.Errorf("oidc provider: redirect from %s: %w", resp.Request.URL.Path, err)
		}
		pg.redirect = loc
		return pg, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return nil, fmt.Errorf("oidc provider: read %s: %w", resp.Request.URL.Path, err)
	}
	if pg.doc, err = html.Parse(bytes.NewReader(body)); err != nil {
		return nil, fmt.Errorf("oidc provider: parse %s: %w", resp.Request.URL.Path, err)
	}
	if resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnauthorized {
		return nil, fmt.Errorf("oidc provider: %s answered %s: %s", resp.Request.URL.Path, resp.Status, pageError(pg.doc))
	}
	return pg, nil
}

// unexpected describes a page that is not what the flow expected.
func (pg *page) unexpected(want string) error {
	if pg.redirect != nil {
		return fmt.Errorf("oidc provider: expected %s, got a redirect to %s", want, pg.redirect.Redacted())
	}
	return fmt.Errorf("oidc provider: expected %s on %s (HTTP %d): %s", want, pg.url.Path, pg.status, pageError(pg.doc))
}

// pageError is the text of the page's element with id "error", or its title
// and headings.
func pageError(doc *html.Node) string {
	if n := findByID(doc, "error"); n != nil {
		return text(n)
	}
	var parts []string
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.Data == "title" || n.Data == "h1" || n.Data == "p") {
			parts = append(parts, text(n))
			return
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	if doc != nil {
		visit(doc)
	}
	return strings.Join(parts, " | ")
}

func findByID(n *html.Node, id string) *html.Node {
	if n == nil {
		return nil
	}
	if n.Type == html.ElementNode && attr(n, "id") == id {
		return n
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		if found := findByID(c, id); found != nil {
			return found
		}
	}
	return nil
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var sb strings.Builder
	var visit func(*html.Node)
	visit = func(n *html.Node) {
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			visit(c)
		}
	}
	visit(n)
	return strings.Join(strings.Fields(sb.String()), " ")
}

// tokenRequest posts form to the token endpoint, with HTTP Basic client
// authentication when there is a secret and client_id in the form when not.
func (p *Provider) tokenRequest(ctx context.Context, clientID, secret string, form url.Values) (*Tokens, error) {
	var t Tokens
	if err := p.post(ctx, p.endpoints.Token, clientID, secret, form, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func (p *Provider) post(ctx context.Context, endpoint, clientID, secret string, form url.Values, out any) error {
	if secret == "" && clientID != "" {
		form.Set("client_id", clientID)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if secret != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret)) // RFC 6749 2.3.1
	}
	resp, err := p.httpClient(nil).Do(req)
	if err != nil {
		return fmt.Errorf("oidc provider: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPage))
	if err != nil {
		return fmt.Errorf("oidc provider: read %s: %w", endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		te := &TokenError{Status: resp.StatusCode}
		if json.Unmarshal(body, te) != nil || te.Code == "" {
			return fmt.Errorf("oidc provider: %s answered %s: %.200s", endpoint, resp.Status, body)
		}
		return te
	}
	return json.Unmarshal(body, out)
}

// DecodeClaims returns a JWT's claims without verifying it.
func DecodeClaims(jwt string) (map[string]any, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWT (want three dot-separated parts)")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, fmt.Errorf("JWT payload: %w", err)
	}
	return claims, nil
}

func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
