package credentials

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Client is an application registered at an issuer, and the grants it can
// run. Its methods are safe for concurrent use.
type Client struct {
	// Endpoints are the issuer's endpoints (see Discover).
	Endpoints Endpoints
	// ClientID is required.
	ClientID string
	// ClientSecret makes the client confidential (client credentials; it is
	// sent with HTTP Basic authentication). Empty means a public client.
	ClientSecret string
	// Audience is the resource (RFC 8707) the access token is for: the hub.
	// Empty means the issuer's default.
	Audience string
	// Scopes are requested as the scope parameter. Nil sends none.
	Scopes []string
	// HTTPClient carries the CA pool, proxy and timeouts. Nil means
	// http.DefaultClient.
	HTTPClient *http.Client
}

func (c *Client) config(redirectURL string) *oauth2.Config {
	style := oauth2.AuthStyleInParams
	if c.ClientSecret != "" {
		style = oauth2.AuthStyleInHeader
	}
	return &oauth2.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       c.Endpoints.AuthorizationURL,
			DeviceAuthURL: c.Endpoints.DeviceAuthorizationURL,
			TokenURL:      c.Endpoints.TokenURL,
			AuthStyle:     style,
		},
		RedirectURL: redirectURL,
		Scopes:      c.Scopes,
	}
}

// ctx returns ctx with the client's HTTP client for x/oauth2.
func (c *Client) ctx(ctx context.Context) context.Context {
	if c.HTTPClient == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, c.HTTPClient)
}

func (c *Client) resourceOpts() []oauth2.AuthCodeOption {
	if c.Audience == "" {
		return nil
	}
	return []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("resource", c.Audience)}
}

// DeviceCode runs the device authorization grant (RFC 8628): it asks for a
// device code, writes the verification URI and the user code to prompt,
// and polls the token endpoint at the interval the issuer asks for
// (slower after slow_down) until the user approves or denies, the code
// expires, or ctx ends.
func (c *Client) DeviceCode(ctx context.Context, prompt io.Writer) (*oauth2.Token, error) {
	if c.Endpoints.DeviceAuthorizationURL == "" {
		return nil, fmt.Errorf("device code sign-in: issuer %s has no device authorization endpoint; use the browser sign-in", c.Endpoints.Issuer)
	}
	cfg := c.config("")
	octx := c.ctx(ctx)
	da, err := cfg.DeviceAuth(octx, c.resourceOpts()...)
	if err != nil {
		return nil, fmt.Errorf("device code sign-in: %w", oauthError(err))
	}
	if da.VerificationURIComplete != "" {
		fmt.Fprintf(prompt, "To sign in, open %s\nor open %s and enter the code %s\n", da.VerificationURIComplete, da.VerificationURI, da.UserCode)
	} else {
		fmt.Fprintf(prompt, "To sign in, open %s and enter the code %s\n", da.VerificationURI, da.UserCode)
	}
	tok, err := c.pollDevice(octx, cfg, da)
	switch {
	case err == nil:
		return tok, nil
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		// DeviceAccessToken bounds the polling by the code's expiry.
		return nil, errors.New("device code sign-in: the code expired before the sign-in was completed; run the login again")
	}
	return nil, fmt.Errorf("device code sign-in: %w", oauthError(err))
}

// pollDevice polls for the device code's token, as DeviceAccessToken does,
// and keeps polling through an issuer that is briefly unavailable (HTTP
// 503, temporarily_unavailable: a hub replica whose database is
// restarting), where DeviceAccessToken would give up.
func (c *Client) pollDevice(ctx context.Context, cfg *oauth2.Config, da *oauth2.DeviceAuthResponse) (*oauth2.Token, error) {
	for {
		tok, err := cfg.DeviceAccessToken(ctx, da)
		var re *oauth2.RetrieveError
		if err == nil || !errors.As(err, &re) || (re.ErrorCode != "temporarily_unavailable" && (re.Response == nil || re.Response.StatusCode != http.StatusServiceUnavailable)) {
			return tok, err
		}
		wait := time.Duration(da.Interval) * time.Second
		if wait <= 0 {
			wait = 5 * time.Second // RFC 8628's default interval
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// ClientCredentials runs the client credentials grant for a service
// principal; ClientSecret must be set.
func (c *Client) ClientCredentials(ctx context.Context) (*oauth2.Token, error) {
	if c.ClientSecret == "" {
		return nil, errors.New("client credentials: no client secret")
	}
	cc := clientcredentials.Config{
		ClientID:     c.ClientID,
		ClientSecret: c.ClientSecret,
		TokenURL:     c.Endpoints.TokenURL,
		Scopes:       c.Scopes,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	if c.Audience != "" {
		cc.EndpointParams = map[string][]string{"resource": {c.Audience}}
	}
	tok, err := cc.Token(c.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("client credentials for %s: %w", c.ClientID, oauthError(err))
	}
	return tok, nil
}

// Refresh redeems refreshToken. An issuer that does not rotate refresh
// tokens keeps the old one, which the result then carries.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	if refreshToken == "" {
		return nil, errors.New("refresh: no refresh token")
	}
	// An expired token makes the token source refresh at once.
	ts := c.config("").TokenSource(c.ctx(ctx), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	tok, err := ts.Token()
	if err != nil {
		return nil, fmt.Errorf("refresh: %w", oauthError(err))
	}
	return tok, nil
}

// OAuthError is an error answer from the issuer, such as access_denied
// or invalid_grant.
type OAuthError struct {
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	if e.Description == "" {
		return "the issuer answered " + e.Code
	}
	return fmt.Sprintf("the issuer answered %s: %s", e.Code, e.Description)
}

// oauthError turns x/oauth2's RetrieveError (which holds the whole
// response body) into an OAuthError.
func oauthError(err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.ErrorCode != "" {
		return &OAuthError{Code: re.ErrorCode, Description: re.ErrorDescription}
	}
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("the issuer answered %s", re.Response.Status)
	}
	return err
}
