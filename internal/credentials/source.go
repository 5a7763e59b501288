package credentials

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// DefaultRefreshSkew is how long before its expiry a token is renewed.
const DefaultRefreshSkew = 60 * time.Second

// Flow is the interactive sign-in a Source runs.
type Flow int

const (
	// FlowDeviceCode prints a URL and a code; the default, as it works
	// without a browser on this machine.
	FlowDeviceCode Flow = iota
	// FlowAuthCode opens a browser and receives the code on a loopback
	// redirect.
	FlowAuthCode
)

// ErrLoginRequired is matched (errors.Is) by Get's error when no valid
// token is cached and a new sign-in is needed but not allowed.
var ErrLoginRequired = errors.New("login required")

// Config describes a Source.
type Config struct {
	// Issuer is the OIDC issuer URL. Required.
	Issuer string
	// ClientID is the CLI's (or the service principal's) client ID.
	// Required.
	ClientID string
	// ClientSecret, when set, signs in a service principal with client
	// credentials. It is never cached: a service principal's token is
	// renewed only when the caller supplies the secret again.
	ClientSecret string
	// Audience is the resource the access token is for (the hub). Empty
	// means the issuer's default.
	Audience string
	// Scopes are requested with every grant. Nil means "openid profile"
	// for people and none for service principals.
	Scopes []string
	// Login names the cache entry, to keep several sign-ins with the same
	// client apart. Empty means "default".
	Login string
	// Present is the token Bearer and ExecCredential use (zero: the access
	// token; see the package doc).
	Present Present

	// Cache holds the tokens. Required.
	Cache *Cache
	// HTTPClient talks to the issuer (CA pool, proxy). Nil means a client
	// with a 30 s timeout per request and the proxy from the environment.
	HTTPClient *http.Client
	// Endpoints, when TokenURL is set, are used instead of discovering
	// them from Issuer.
	Endpoints Endpoints

	// Interactive allows Get to start a sign-in when nothing can be
	// refreshed. False means Get returns an error wrapping
	// ErrLoginRequired instead.
	Interactive bool
	// Flow is the interactive sign-in (zero: device code).
	Flow Flow
	// Prompt receives the sign-in instructions (stderr). Nil discards
	// them, which makes sense only with OpenBrowser.
	Prompt io.Writer
	// OpenBrowser opens the authorization URL of FlowAuthCode. Nil means
	// printing it to Prompt.
	OpenBrowser Browser
	// LoginTimeout bounds an interactive sign-in. Zero means
	// DefaultLoginTimeout.
	LoginTimeout time.Duration
	// RefreshSkew is how long before expiry a token is renewed, 0 to the
	// token's lifetime. Zero means DefaultRefreshSkew.
	RefreshSkew time.Duration
	// Now is the clock that judges expiry. Nil means time.Now.
	Now func() time.Time
}

// Source hands out valid tokens for one Config, renewing them as needed.
// It is safe for concurrent use, and cooperates with other processes that
// share the cache.
type Source struct {
	cfg Config
	key Key

	mu        sync.Mutex
	endpoints Endpoints // guarded by mu; zero until discovered
}

// New validates cfg. It does no I/O.
func New(cfg Config) (*Source, error) {
	switch {
	case cfg.Issuer == "":
		return nil, errors.New("credentials: no issuer")
	case cfg.ClientID == "":
		return nil, errors.New("credentials: no client ID")
	case cfg.Cache == nil:
		return nil, errors.New("credentials: no token cache")
	case cfg.RefreshSkew < 0 || cfg.LoginTimeout < 0:
		return nil, errors.New("credentials: negative RefreshSkew or LoginTimeout")
	case cfg.Flow != FlowDeviceCode && cfg.Flow != FlowAuthCode:
		return nil, fmt.Errorf("credentials: unknown flow %d", cfg.Flow)
	case cfg.Present != PresentAccessToken && cfg.Present != PresentIDToken:
		return nil, fmt.Errorf("credentials: unknown token choice %d", cfg.Present)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	// The key has the scopes as given, so that a service principal's
	// Source finds its token whether or not the secret is supplied.
	key := Key{Issuer: cfg.Issuer, ClientID: cfg.ClientID, Audience: cfg.Audience, Scopes: cfg.Scopes, Login: cfg.Login}.normal()
	if cfg.Scopes == nil && cfg.ClientSecret == "" {
		cfg.Scopes = []string{"openid", "profile"}
	}
	if cfg.Prompt == nil {
		cfg.Prompt = io.Discard
	}
	if cfg.LoginTimeout == 0 {
		cfg.LoginTimeout = DefaultLoginTimeout
	}
	if cfg.RefreshSkew == 0 {
		cfg.RefreshSkew = DefaultRefreshSkew
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Source{cfg: cfg, key: key, endpoints: cfg.Endpoints}, nil
}

// Key is the cache key of this source's tokens.
func (s *Source) Key() Key { return s.key }

// Get returns a token valid for at least RefreshSkew: the cached one, or
// one renewed under the cache entry's lock (refresh token, else client
// credentials if a secret is configured, else an interactive sign-in if
// allowed). Concurrent callers, in this process or others, renew once.
func (s *Source) Get(ctx context.Context) (Token, error) {
	if e, ok, err := s.cfg.Cache.Load(s.key); err != nil {
		return Token{}, err
	} else if ok && s.usable(e) {
		return e.Token, nil
	}
	unlock, err := s.cfg.Cache.Lock(ctx, s.key)
	if err != nil {
		return Token{}, err
	}
	defer unlock()
	// Another process may have renewed the token while we waited.
	e, ok, err := s.cfg.Cache.Load(s.key)
	if err != nil {
		return Token{}, err
	}
	if ok && s.usable(e) {
		return e.Token, nil
	}
	var refreshErr error
	if ok && e.Token.RefreshToken != "" {
		tok, err := s.refreshLocked(ctx, e.Token)
		if err == nil {
			return tok, nil
		}
		refreshErr = err
	}
	switch {
	case s.cfg.ClientSecret != "":
		return s.loginLocked(ctx)
	case s.cfg.Interactive:
		return s.loginLocked(ctx)
	case refreshErr != nil:
		return Token{}, fmt.Errorf("%w: %v; run `tether login` to sign in again", ErrLoginRequired, refreshErr)
	case ok && e.Grant == GrantClientCredentials:
		return Token{}, fmt.Errorf("%w: the cached token of service principal %s has expired, and Tether does not store client secrets: supply the secret again (`tether login --service-principal`)",
			ErrLoginRequired, s.cfg.ClientID)
	case ok:
		return Token{}, fmt.Errorf("%w: the cached token for %s has expired and cannot be refreshed; run `tether login`", ErrLoginRequired, s.cfg.Issuer)
	}
	return Token{}, fmt.Errorf("%w: not signed in to %s; run `tether login`", ErrLoginRequired, s.cfg.Issuer)
}

// Login signs in anew (client credentials if a secret is configured, else
// the configured interactive flow) and caches the token, whatever the
// cache holds.
func (s *Source) Login(ctx context.Context) (Token, error) {
	unlock, err := s.cfg.Cache.Lock(ctx, s.key)
	if err != nil {
		return Token{}, err
	}
	defer unlock()
	return s.loginLocked(ctx)
}

// usable reports whether e's token can be handed out now.
func (s *Source) usable(e Entry) bool {
	if !e.Token.validAt(s.cfg.Now(), s.cfg.RefreshSkew) {
		return false
	}
	_, err := e.Token.Bearer(s.cfg.Present)
	return err == nil
}

func (s *Source) refreshLocked(ctx context.Context, old Token) (Token, error) {
	c, err := s.client(ctx)
	if err != nil {
		return Token{}, err
	}
	ot, err := c.Refresh(ctx, old.RefreshToken)
	if err != nil {
		return Token{}, err
	}
	tok := fromOAuth2(ot)
	if tok.IDToken == "" {
		tok.IDToken = old.IDToken // issuers need not send a new one (OIDC Core 12.2)
	}
	if err := s.cfg.Cache.Store(s.key, tok, GrantUser); err != nil {
		return Token{}, err
	}
	return tok, nil
}

func (s *Source) loginLocked(ctx context.Context) (Token, error) {
	c, err := s.client(ctx)
	if err != nil {
		return Token{}, err
	}
	grant := GrantUser
	var ot *oauth2.Token
	switch {
	case s.cfg.ClientSecret != "":
		grant = GrantClientCredentials
		ot, err = c.ClientCredentials(ctx)
	case s.cfg.Flow == FlowAuthCode:
		ot, err = c.AuthCode(ctx, AuthCodeOptions{OpenBrowser: s.cfg.OpenBrowser, Prompt: s.cfg.Prompt, Timeout: s.cfg.LoginTimeout})
	default:
		lctx, cancel := context.WithTimeout(ctx, s.cfg.LoginTimeout)
		defer cancel()
		ot, err = c.DeviceCode(lctx, s.cfg.Prompt)
	}
	if err != nil {
		return Token{}, err
	}
	tok := fromOAuth2(ot)
	if _, err := tok.Bearer(s.cfg.Present); err != nil {
		return Token{}, fmt.Errorf("sign-in to %s: %w", s.cfg.Issuer, err)
	}
	if err := s.cfg.Cache.Store(s.key, tok, grant); err != nil {
		return Token{}, err
	}
	return tok, nil
}

// client returns the OAuth client, discovering the endpoints once.
func (s *Source) client(ctx context.Context) (*Client, error) {
	s.mu.Lock()
	ep := s.endpoints
	s.mu.Unlock()
	if ep.TokenURL == "" {
		var err error
		if ep, err = Discover(ctx, s.cfg.HTTPClient, s.cfg.Issuer); err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.endpoints = ep
		s.mu.Unlock()
	}
	return &Client{
		Endpoints:    ep,
		ClientID:     s.cfg.ClientID,
		ClientSecret: s.cfg.ClientSecret,
		Audience:     s.cfg.Audience,
		Scopes:       s.cfg.Scopes,
		HTTPClient:   s.cfg.HTTPClient,
	}, nil
}

// ExecCredential returns the ExecCredential JSON for tok, with the token
// chosen by Config.Present.
func (s *Source) ExecCredential(tok Token) ([]byte, error) {
	b, err := tok.Bearer(s.cfg.Present)
	if err != nil {
		return nil, err
	}
	return ExecCredential(b, tok.Expiry)
}
