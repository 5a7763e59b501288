package issuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// Defaults of Config's durations.
const (
	DefaultAccessTokenTTL     = time.Hour
	DefaultRefreshTokenTTL    = 14 * 24 * time.Hour
	DefaultDeviceCodeTTL      = 15 * time.Minute
	DefaultDevicePollInterval = 5 * time.Second
)

// Fixed limits.
const (
	// authCodeTTL is the life of an authorization code.
	authCodeTTL = 2 * time.Minute
	// maxPending bounds the pending device codes, and separately the
	// unredeemed authorization codes, in the store (across the replicas
	// sharing it).
	maxPending = 10_000
	// maxFormBytes bounds a request body.
	maxFormBytes = 64 << 10
)

// Endpoint paths, below the issuer URL's path.
const (
	discoveryPath  = "/.well-known/openid-configuration"
	keysPath       = "/keys"
	tokenPath      = "/token"
	deviceCodePath = "/devicecode"
	devicePath     = "/device"
	authorizePath  = "/authorize"
)

// Config configures an Issuer.
type Config struct {
	// URL is the issuer identifier, the tokens' iss: an https URL without
	// a trailing slash, query or fragment; it may have a path (such as
	// https://hub.example.com:8443/oidc), under which the endpoints are
	// served. Required.
	URL string
	// Store holds the users, service principals and their credentials,
	// and the sign-ins in progress (device codes, authorization codes and
	// lock-out counts, as ephemeral records): issuers of one URL and key
	// sharing a store serve as one, behind any load balancer. Required.
	Store store.Store
	// Key signs every token (ES256); a P-256 key, see LoadOrCreateKey.
	// Required.
	Key *ecdsa.PrivateKey
	// Audience is the aud of access tokens: the hub's resource ID, such as
	// "tether". Required, and not CLIClientID (an ID token must never pass
	// as an access token).
	Audience string
	// CLIClientID is the client ID of the tether CLI, a public client
	// (no secret) that signs people in with the device code flow or the
	// authorization code flow with PKCE. Required.
	CLIClientID string
	// ConsoleClientID is the client ID of the hub's web console (package
	// console), a public client that signs people in only with the
	// authorization code flow with PKCE and only back to
	// ConsoleRedirectURI. Empty means no console client: /authorize then
	// serves the CLI alone.
	ConsoleClientID string
	// ConsoleRedirectURI is the console's one redirect URI, compared
	// exactly: an https URL such as
	// https://hub.example.com:8443/console/auth/callback. Required with
	// ConsoleClientID.
	ConsoleRedirectURI string
	// AccessTokenTTL is the life of access and ID tokens, 1 minute to 24
	// hours. Zero means DefaultAccessTokenTTL.
	AccessTokenTTL time.Duration
	// RefreshTokenTTL is the life of a refresh token, from its issue (each
	// refresh issues a new one), at least AccessTokenTTL. Zero means
	// DefaultRefreshTokenTTL.
	RefreshTokenTTL time.Duration
	// DeviceCodeTTL is how long a device code waits for the person to sign
	// in, 1 to 60 minutes. Zero means DefaultDeviceCodeTTL.
	DeviceCodeTTL time.Duration
	// DevicePollInterval is the least time between two polls of one device
	// code (faster polls are answered slow_down), up to 1 minute; it is
	// advertised rounded up to whole seconds. Zero means
	// DefaultDevicePollInterval.
	DevicePollInterval time.Duration
	// Audit, when set, receives an audit event for every answer of the
	// token endpoint: a sign-in completed (who, by which grant) or refused
	// (why). Events hold no codes, secrets or tokens.
	Audit func(audit.Event)
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Issuer is the embedded OIDC provider, an http.Handler. It is safe for
// concurrent use and starts no goroutine: it keeps its state in
// Config.Store, and purges the expired records from a request now and
// then.
type Issuer struct {
	cfg    Config
	logger *slog.Logger
	path   string // URL's path, "" or "/..." without a trailing slash
	kid    string

	accessSigner, idSigner, refreshSigner jose.Signer

	devices *deviceStore
	codes   *codeStore
	// logins counts failed passwords per folded login name; guesses
	// counts wrong user codes per client address.
	logins, guesses *lockout

	purgeMu   sync.Mutex
	lastPurge time.Time // guarded by purgeMu; see purgeExpired

	dummyHash func() ([]byte, error) // a password hash to check against when there is no user
}

// New validates cfg and returns an Issuer. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Issuer, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := checkIssuerURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("issuer: URL: %w", err)
	}
	switch {
	case cfg.Store == nil:
		return nil, errors.New("issuer: no store")
	case cfg.Key == nil:
		return nil, errors.New("issuer: no signing key")
	case cfg.Key.Curve != elliptic.P256():
		return nil, errors.New("issuer: the signing key is not a P-256 key")
	case cfg.Audience == "":
		return nil, errors.New("issuer: no audience")
	case cfg.CLIClientID == "":
		return nil, errors.New("issuer: no CLI client ID")
	case cfg.Audience == cfg.CLIClientID:
		return nil, fmt.Errorf("issuer: the audience and the CLI client ID are both %q; they must differ, or an ID token would pass as an access token", cfg.Audience)
	}
	if err := checkConsoleClient(cfg); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.AccessTokenTTL, DefaultAccessTokenTTL)
	def(&cfg.RefreshTokenTTL, DefaultRefreshTokenTTL)
	def(&cfg.DeviceCodeTTL, DefaultDeviceCodeTTL)
	def(&cfg.DevicePollInterval, DefaultDevicePollInterval)
	switch {
	case cfg.AccessTokenTTL < time.Minute || cfg.AccessTokenTTL > 24*time.Hour:
		return nil, fmt.Errorf("issuer: access token lifetime %s is not between 1m and 24h", cfg.AccessTokenTTL)
	case cfg.RefreshTokenTTL < cfg.AccessTokenTTL:
		return nil, fmt.Errorf("issuer: refresh token lifetime %s is shorter than the access token's, %s", cfg.RefreshTokenTTL, cfg.AccessTokenTTL)
	case cfg.DeviceCodeTTL < time.Minute || cfg.DeviceCodeTTL > time.Hour:
		return nil, fmt.Errorf("issuer: device code lifetime %s is not between 1m and 1h", cfg.DeviceCodeTTL)
	case cfg.DevicePollInterval < 0 || cfg.DevicePollInterval > time.Minute:
		return nil, fmt.Errorf("issuer: device poll interval %s is not between 0 and 1m", cfg.DevicePollInterval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	i := &Issuer{
		cfg:       cfg,
		logger:    logger,
		path:      u.Path,
		devices:   &deviceStore{st: cfg.Store, logger: logger, max: maxPending},
		codes:     &codeStore{st: cfg.Store, max: maxPending},
		logins:    &lockout{st: cfg.Store, kind: kindLockoutLogin, free: loginFreeFailures},
		guesses:   &lockout{st: cfg.Store, kind: kindLockoutAddr, free: guessFreeFailures},
		dummyHash: sync.OnceValues(func() ([]byte, error) { return HashPassword("no such user, no such password") }),
	}
	if i.kid, err = thumbprint(&cfg.Key.PublicKey); err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	for _, s := range []struct {
		signer *jose.Signer
		typ    jose.ContentType
	}{{&i.accessSigner, typeAccessToken}, {&i.idSigner, typeIDToken}, {&i.refreshSigner, typeRefreshToken}} {
		key := jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: cfg.Key, KeyID: i.kid}}
		if *s.signer, err = jose.NewSigner(key, (&jose.SignerOptions{}).WithType(s.typ)); err != nil {
			return nil, fmt.Errorf("issuer: signer: %w", err)
		}
	}
	return i, nil
}

// checkIssuerURL checks an issuer identifier (OIDC Discovery 3: https, no
// query or fragment) and refuses a trailing slash, so that iss has one
// spelling.
func checkIssuerURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case s == "":
		return nil, errors.New("required")
	case err != nil:
		return nil, err
	case u.Scheme != "https" || u.Host == "":
		return nil, fmt.Errorf("%q is not an https URL", s)
	case u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#"):
		return nil, fmt.Errorf("%q has user information, a query or a fragment", s)
	case strings.HasSuffix(s, "/"):
		return nil, fmt.Errorf("%q ends in a slash; leave it out", s)
	case u.RawPath != "":
		return nil, fmt.Errorf("%q has an escaped path", s)
	}
	return u, nil
}

// thumbprint is the RFC 7638 thumbprint of a public key, base64url: the
// key ID.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// PublicKeys returns the public keys that verify the issuer's tokens, for
// the hub's verifier (identity.IssuerConfig.Keys). The slice is the
// caller's.
func (i *Issuer) PublicKeys() []jose.JSONWebKey {
	return []jose.JSONWebKey{{Key: &i.cfg.Key.PublicKey, KeyID: i.kid, Algorithm: string(jose.ES256), Use: "sig"}}
}

// ServeHTTP serves the endpoints under the issuer URL's path; anything else
// is not found.
func (i *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, i.path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	var h func(http.ResponseWriter, *http.Request)
	var methods []string
	switch rest {
	case discoveryPath:
		h, methods = i.serveDiscovery, []string{http.MethodGet, http.MethodHead}
	case keysPath:
		h, methods = i.serveKeys, []string{http.MethodGet, http.MethodHead}
	case tokenPath:
		h, methods = i.serveToken, []string{http.MethodPost}
	case deviceCodePath:
		h, methods = i.serveDeviceCode, []string{http.MethodPost}
	case devicePath:
		h, methods = i.serveDevice, []string{http.MethodGet, http.MethodPost}
	case authorizePath:
		h, methods = i.serveAuthorize, []string{http.MethodGet, http.MethodPost}
	default:
		http.NotFound(w, r)
		return
	}
	for _, m := range methods {
		if r.Method == m {
			if m == http.MethodPost {
				i.purgeExpired(r.Context())
			}
			h(w, r)
			return
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// endpoint returns the absolute URL of an endpoint.
func (i *Issuer) endpoint(path string) string { return i.cfg.URL + path }

// discovery is the OpenID Provider Metadata document.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	ResponseModesSupported            []string `json:"response_modes_supported"`
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	ScopesSupported                   []string `json:"scopes_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
	AuthorizationResponseISS          bool     `json:"authorization_response_iss_parameter_supported"`
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	d := discovery{
		Issuer:                            i.cfg.URL,
		JWKSURI:                           i.endpoint(keysPath),
		AuthorizationEndpoint:             i.endpoint(authorizePath),
		TokenEndpoint:                     i.endpoint(tokenPath),
		DeviceAuthorizationEndpoint:       i.endpoint(deviceCodePath),
		GrantTypesSupported:               []string{grantAuthorizationCode, grantRefreshToken, grantDeviceCode, grantClientCredentials},
		ResponseTypesSupported:            []string{"code"},
		ResponseModesSupported:            []string{"query"},
		CodeChallengeMethodsSupported:     []string{"S256"},
		IDTokenSigningAlgValuesSupported:  []string{string(jose.ES256)},
		TokenEndpointAuthMethodsSupported: []string{"client_secret_basic", "client_secret_post", "none"},
		SubjectTypesSupported:             []string{"public"},
		ScopesSupported:                   i.scopesSupported(),
		ClaimsSupported:                   []string{"iss", "sub", "aud", "azp", "exp", "iat", "nbf", "jti", "oid", "name", "preferred_username", "idtyp", "scp", "nonce"},
		AuthorizationResponseISS:          true,
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, d)
}

func (i *Issuer) serveKeys(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: i.PublicKeys()})
}

// writeJSON writes v as the JSON response. Unless the handler set one,
// the response is not cached: it may carry tokens.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if h.Get("Cache-Control") == "" {
		h.Set("Cache-Control", "no-store")
		h.Set("Pragma", "no-cache")
	}
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // the client went away if this fails
}
