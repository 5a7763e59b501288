package console

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"tether.dev/tether/internal/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Config's durations.
const (
	DefaultSessionTTL  = 8 * time.Hour
	DefaultIdleTimeout = time.Hour
	DefaultRefresh     = 5 * time.Second
)

// Config configures the console.
type Config struct {
	// URL is the console's public URL, the hub's URL followed by /console
	// (https://hub.example.com:8443/console), without a trailing slash.
	// Its origin is the only one POSTs are accepted from, and
	// URL+"/auth/callback" is the redirect URI registered at the issuers.
	// Required; the path must be /console, where the hub mounts it.
	URL string
	// HubURL is the hub's URL as agents reach it, shown in the commands
	// of the connect page. Required.
	HubURL string
	// Store keeps the sessions and the sign-ins in progress as ephemeral
	// records, so that hub replicas sharing a store share them. Required.
	Store store.Store
	// Issuers are where people sign in, the default first. At least one.
	Issuers []Issuer
	// SessionTTL bounds a session from its sign-in. Zero means
	// DefaultSessionTTL; at least a minute.
	SessionTTL time.Duration
	// IdleTimeout ends a session not used for that long. Zero means
	// DefaultIdleTimeout; at least a minute, at most SessionTTL.
	IdleTimeout time.Duration
	// Refresh is how often the clusters page refreshes its table. Zero
	// means DefaultRefresh.
	Refresh time.Duration
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// Issuer is an OIDC issuer people sign in to the console with, by the
// authorization code flow with PKCE.
type Issuer struct {
	// Name is shown on the sign-in button. Empty means the URL's host.
	Name string
	// URL is the issuer identifier. Required.
	URL string
	// ClientID is the console's client at the issuer, whose redirect URI
	// is Config.URL+"/auth/callback". Required.
	ClientID string
	// ClientSecret, when the issuer registered the console as a
	// confidential client. Empty: a public client (PKCE alone).
	ClientSecret string
	// Scopes are requested at sign-in. Nil means openid, profile and
	// offline_access; openid is always added.
	Scopes []string
	// Embedded marks the hub's own issuer: it is reached in process,
	// through the handler the hub gives the console, never over the
	// network (a hub behind a load balancer may not reach its own public
	// name).
	Embedded bool
	// HTTPClient reaches an external issuer (its CA bundle, the proxy).
	// Nil means http.DefaultClient. Unused when Embedded.
	HTTPClient *http.Client
}

// Console serves the web console. It holds no per-session state in
// memory; it is safe for concurrent use and starts no goroutine.
type Console struct {
	cfg      Config
	logger   *slog.Logger
	origin   string // scheme://host[:port] of cfg.URL
	redirect string // the redirect URI
	pages    map[string]*template.Template
	static   fs.FS

	// providers are the issuers' discovered OIDC configurations, made on
	// first use (index as in cfg.Issuers).
	providers []*provider

	purgeMu   sync.Mutex
	lastPurge time.Time // guarded by purgeMu; see admitSignIn
}

// purgeEvery is how often the console deletes the store's expired
// records.
const purgeEvery = time.Minute

// New validates cfg and returns the console. It does no I/O.
func New(cfg Config, logger *slog.Logger) (*Console, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.Path != Path || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("console: URL %q: want https://HOST[:PORT]%s, the hub's URL followed by %s", cfg.URL, Path, Path)
	}
	switch {
	case cfg.Store == nil:
		return nil, errors.New("console: a store is required (sessions)")
	case cfg.HubURL == "":
		return nil, errors.New("console: the hub's URL is required")
	case len(cfg.Issuers) == 0:
		return nil, errors.New("console: no issuer to sign in with")
	}
	for i, is := range cfg.Issuers {
		if is.URL == "" || is.ClientID == "" {
			return nil, fmt.Errorf("console: issuer %d: a URL and a client ID are required", i)
		}
		if is.Name == "" {
			if iu, err := url.Parse(is.URL); err == nil {
				cfg.Issuers[i].Name = iu.Host
			}
		}
	}
	if cfg.SessionTTL == 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = min(DefaultIdleTimeout, cfg.SessionTTL)
	}
	if cfg.Refresh == 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.SessionTTL < time.Minute || cfg.IdleTimeout < time.Minute || cfg.IdleTimeout > cfg.SessionTTL || cfg.Refresh < time.Second {
		return nil, fmt.Errorf("console: session lifetime %s and idle timeout %s must be at least a minute, the idle timeout no longer than the lifetime, and the refresh %s at least a second", cfg.SessionTTL, cfg.IdleTimeout, cfg.Refresh)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Console{cfg: cfg, logger: logger, origin: u.Scheme + "://" + u.Host, redirect: cfg.URL + callbackPath}
	if c.pages, err = parsePages(); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	if c.static, err = fs.Sub(staticFS, "static"); err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	for range cfg.Issuers {
		c.providers = append(c.providers, &provider{})
	}
	return c, nil
}

// Path is where the hub mounts the console.
const Path = "/console"

// Paths below Path.
const (
	loginPath    = "/auth/login"
	callbackPath = "/auth/callback"
	signOutPath  = "/auth/signout"
)

// RedirectURI is the redirect URI of a console at the hub URL hubURL, to
// register at the issuers.
func RedirectURI(hubURL string) string {
	return strings.TrimSuffix(hubURL, "/") + Path + callbackPath
}

// server is the console serving one hub: api is the hub's own handler,
// which every page calls in process.
type server struct {
	*Console
	api http.Handler
}

// Handler returns the console's handler for requests under /console/; api
// is the hub's handler (its JSON API and, for the embedded issuer, the
// issuer's endpoints), called in process.
func (c *Console) Handler(api http.Handler) http.Handler {
	s := &server{Console: c, api: api}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path+"/{$}", s.index)
	static := http.StripPrefix(Path+"/static/", http.FileServerFS(c.static))
	mux.Handle("GET "+Path+"/static/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		static.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET "+Path+loginPath, s.login)
	mux.HandleFunc("GET "+Path+callbackPath, s.callback)
	mux.HandleFunc("POST "+Path+signOutPath, s.post(s.signOut))
	mux.HandleFunc("GET "+Path+"/clusters", s.page(s.clusters))
	mux.HandleFunc("GET "+Path+"/clusters/{group}/{name}", s.page(s.cluster))
	mux.HandleFunc("GET "+Path+"/assignments", s.page(s.assignments))
	mux.HandleFunc("POST "+Path+"/assignments", s.post(s.createAssignment))
	mux.HandleFunc("POST "+Path+"/assignments/{id}/delete", s.post(s.deleteAssignment))
	mux.HandleFunc("GET "+Path+"/audit", s.page(s.audit))
	mux.HandleFunc("GET "+Path+"/connect", s.page(s.connectForm))
	mux.HandleFunc("POST "+Path+"/connect", s.post(s.connect))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		mux.ServeHTTP(w, r)
	})
}

// csp is the Content-Security-Policy of every console response: only the
// console's own script and style, no inline script or style, no framing,
// forms posting only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	// same-origin, not no-referrer: under no-referrer browsers send
	// "Origin: null" with the console's own form posts, which checkPost
	// must then refuse. Other origins still get no referrer.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store") // the static files say otherwise
}

// index sends a signed-in browser to the clusters, and anyone else to the
// sign-in page.
func (s *server) index(w http.ResponseWriter, r *http.Request) {
	sess, ok := s.session(w, r)
	if !ok {
		return
	}
	if sess == nil {
		s.signInPage(w, r, http.StatusOK, "")
		return
	}
	http.Redirect(w, r, Path+"/clusters", http.StatusSeeOther)
}

// provider is an issuer's OIDC configuration, discovered once.
type provider struct {
	mu sync.Mutex // guards p
	p  *oidcProvider
}
