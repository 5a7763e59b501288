package oidcprovider

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"tether.dev/tether/test/rig"
)

// Grant types a Client may be given.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

const (
	// HarnessClientID is the public client Start always registers, for
	// UserToken and StartDeviceAuthorization: authorization code with PKCE,
	// device code and refresh token, redirect URI HarnessRedirectURI.
	HarnessClientID = "oidcprovider-harness"
	// HarnessRedirectURI is the harness client's loopback redirect URI.
	HarnessRedirectURI = "http://127.0.0.1/callback"
	// DefaultAudience is the one Resource when Config.Resources is empty.
	DefaultAudience = "api://tether"
)

const (
	readyTimeout = 30 * time.Second
	stopGrace    = 5 * time.Second
)

// Config describes one provider. Start fills in the defaults; Provider.Config
// shows the result.
type Config struct {
	// Host is where the provider listens and what its issuer URL and TLS
	// certificate name: an IP address, such as the host end of a network
	// namespace, or a DNS name. Empty means 127.0.0.1.
	Host string
	// Port is the TCP port, 0 to 65535. Zero means a free port chosen by the
	// provider; the issuer URL tells which.
	Port int
	// TenantID is every token's tid claim, a UUID. Empty means a random one.
	TenantID string
	// Users are the people who can sign in.
	Users []User
	// Clients are the registered applications, besides the harness's own
	// (HarnessClientID).
	Clients []Client
	// Resources are the audiences access tokens are issued for; the first is
	// used when a request names none, so every access token is a JWT. Empty
	// means one Resource, DefaultAudience.
	Resources []Resource
	// GroupOverageThreshold is the most groups a token lists; a principal in
	// more gets the overage claims instead. Zero means 200, as in Entra ID.
	GroupOverageThreshold int
	// GroupsPageSize is how many group IDs one page of the groups endpoint
	// holds. Zero means 100.
	GroupsPageSize int
	// TokenTTL is the lifetime of ID and access tokens, at least a second.
	// Zero means one hour.
	TokenTTL time.Duration
	// DevicePollInterval is the polling interval the device authorization
	// response asks for, at least a second. Zero means one second (RFC
	// 8628's default of five is slow for tests).
	DevicePollInterval time.Duration
	// Dir receives the configuration file, the certificates and the log.
	// Empty means a new temporary directory, removed by Close.
	Dir string
	// Log receives the provider's output lines as they come. Nil discards
	// them; they are in Dir/provider.log either way.
	Log io.Writer
}

// User is a person who signs in with Username and Password.
type User struct {
	// Username is the sign-in name (matched without regard to case) and the
	// preferred_username claim. Required.
	Username string
	// Password is required.
	Password string
	// ObjectID is the oid and sub claim, a UUID. Empty means
	// NameUUID("user/" + Username).
	ObjectID string
	// Name is the name claim. Empty means Username.
	Name string
	// Groups are the object IDs of the user's groups (see GroupIDs).
	Groups []string
	// Claims are more claims for the user's ID and access tokens, such as
	// email. They cannot replace the claims the provider sets.
	Claims map[string]any
}

// Client is a registered application.
type Client struct {
	// ID is the client_id. Required.
	ID string
	// Secret makes the client confidential: it authenticates at the token
	// endpoint with HTTP Basic (client_secret_basic), and is registered as
	// a web application. Empty means a public client (no authentication;
	// PKCE): a native application, whose loopback redirect URIs match any
	// port, or a web application (such as a single-page app) when every
	// redirect URI is https.
	Secret string
	// ObjectID is the oid of the client's service principal, a UUID, put in
	// its client-credentials tokens. Empty means NameUUID("client/" + ID).
	ObjectID string
	// Name is the display name. Empty means ID.
	Name string
	// GrantTypes are the grants the client may use (the Grant constants).
	// Empty means authorization code, device code and refresh token for a
	// public client, client credentials for a confidential one.
	GrantTypes []string
	// RedirectURIs are the registered redirect URIs for the authorization
	// code grant, matched exactly (but for a native client's loopback
	// port). A web application's are https URLs known only when the test
	// runs, such as a hub's https://HOST:PORT/console/auth/callback. A
	// public client's are either all https (a web application) or none
	// (a native one: loopback http or a private-use scheme). Empty means
	// http://127.0.0.1/callback and http://localhost/callback.
	RedirectURIs []string
	// Groups are the object IDs of the service principal's groups, for its
	// client-credentials tokens.
	Groups []string
	// IDTokenSigningAlg is "RS256" or "ES256". Empty means RS256.
	IDTokenSigningAlg string
}

// Resource is an API that access tokens are issued for (RFC 8707).
type Resource struct {
	// Identifier is the resource parameter's value, an absolute URI.
	// Required.
	Identifier string
	// Audience is the aud claim of its access tokens. Empty means Identifier.
	Audience string
	// Scopes are the scopes it defines, which clients may request.
	Scopes []string
	// SigningAlg is "RS256" or "ES256". Empty means RS256.
	SigningAlg string
}

// Provider is a running OpenID provider. Its fields are read-only.
type Provider struct {
	// Issuer is the issuer URL, https://Host:Port.
	Issuer string
	// CAFile is the PEM file of the CA that signed the provider's TLS
	// certificate; CAPEM is its content.
	CAFile string
	CAPEM  []byte
	// Dir holds the configuration, certificates and provider.log.
	Dir string
	// Config is the configuration with its defaults filled in.
	Config Config

	pool      *x509.CertPool
	endpoints endpoints
	proc      *rig.Process
	logFile   *os.File
	output    chan struct{} // closed when the output reader has returned
	removeDir bool

	closeOnce sync.Once
	closeErr  error
}

// endpoints are the URLs from the discovery document that the helpers use.
type endpoints struct {
	Authorization       string `json:"authorization_endpoint"`
	Token               string `json:"token_endpoint"`
	DeviceAuthorization string `json:"device_authorization_endpoint"`
	JWKS                string `json:"jwks_uri"`
}

// Start installs the Node packages if needed, makes a CA and a certificate
// for cfg.Host, starts server.js and returns once it serves its discovery
// document over HTTPS. Close stops it.
func Start(ctx context.Context, cfg Config) (*Provider, error) {
	if err := cfg.complete(); err != nil {
		return nil, err
	}
	src, err := sourceDir()
	if err != nil {
		return nil, err
	}
	if err := ensureNodeModules(ctx, src, cfg.Log); err != nil {
		return nil, err
	}
	p := &Provider{Config: cfg, Dir: cfg.Dir}
	if p.Dir == "" {
		if p.Dir, err = os.MkdirTemp("", "tether-oidcprovider-"); err != nil {
			return nil, err
		}
		p.removeDir = true
	}
	if err := p.start(ctx, src); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Provider) start(ctx context.Context, src string) error {
	cfg := p.Config
	var err error
	p.CAFile, p.CAPEM, err = writeCertificates(p.Dir, cfg.Host)
	if err != nil {
		return fmt.Errorf("make the provider's certificates: %w", err)
	}
	p.pool = x509.NewCertPool()
	p.pool.AppendCertsFromPEM(p.CAPEM)
	if err := writeSigningKeys(filepath.Join(p.Dir, "jwks.json")); err != nil {
		return fmt.Errorf("make the provider's signing keys: %w", err)
	}
	configPath := filepath.Join(p.Dir, "config.json")
	if err := writeServerConfig(configPath, cfg, p.Dir); err != nil {
		return err
	}
	if p.logFile, err = os.Create(filepath.Join(p.Dir, "provider.log")); err != nil {
		return err
	}

	node, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("the OIDC provider needs Node.js >= 20 on PATH: %w", err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(node, filepath.Join(src, "server.js"), configPath)
	cmd.Dir = src
	cmd.Stdout, cmd.Stderr = pw, pw
	p.proc, err = rig.StartProcess("oidc provider", "", cmd)
	pw.Close() // the child has its own copy
	if err != nil {
		pr.Close()
		return err
	}
	ready := make(chan string, 1)
	p.output = make(chan struct{})
	go p.readOutput(pr, ready) // ends when the process and its copy of pw are gone

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case p.Issuer = <-ready:
	case <-p.proc.Done():
		<-p.output
		return fmt.Errorf("oidc provider exited before it was ready: %v\n%s", p.proc.Err(), p.tail(30))
	case <-timer.C:
		return fmt.Errorf("oidc provider not ready within %s:\n%s", readyTimeout, p.tail(30))
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := p.discover(ctx); err != nil {
		return fmt.Errorf("oidc provider discovery at %s: %w\n%s", p.Issuer, err, p.tail(30))
	}
	return nil
}

// readOutput copies the provider's output lines to the log file and
// Config.Log, and sends the issuer from the "ready" line on ready.
func (p *Provider) readOutput(r *os.File, ready chan<- string) {
	defer close(p.output)
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	sent := false
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(p.logFile, line)
		if p.Config.Log != nil {
			fmt.Fprintln(p.Config.Log, line)
		}
		if issuer, ok := strings.CutPrefix(line, "ready "); ok && !sent {
			ready <- issuer
			sent = true
		}
	}
	io.Copy(io.Discard, r) // a line too long for the scanner: keep the pipe flowing
}

// discover reads the discovery document over HTTPS with the harness's CA.
func (p *Provider) discover(ctx context.Context) error {
	c := p.httpClient(nil)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	var doc struct {
		Issuer string `json:"issuer"`
		endpoints
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return err
	}
	if doc.Issuer != p.Issuer {
		return fmt.Errorf("discovery names issuer %q", doc.Issuer)
	}
	p.endpoints = doc.endpoints
	return nil
}

// Close stops the provider and removes its directory if Start made it. It
// may be called more than once.
func (p *Provider) Close() error {
	p.closeOnce.Do(func() {
		if p.proc != nil {
			p.closeErr = p.proc.Stop(syscall.SIGTERM, stopGrace)
			<-p.output
		}
		if p.logFile != nil {
			p.logFile.Close()
		}
		if p.removeDir {
			os.RemoveAll(p.Dir)
		}
	})
	return p.closeErr
}

// Pid is the provider process's ID.
func (p *Provider) Pid() int { return p.proc.Pid() }

// RootCAs is a pool with the CA that signed the provider's certificate.
func (p *Provider) RootCAs() *x509.CertPool { return p.pool.Clone() }

// User returns the configured user with this username.
func (p *Provider) User(username string) (User, bool) {
	for _, u := range p.Config.Users {
		if strings.EqualFold(u.Username, username) {
			return u, true
		}
	}
	return User{}, false
}

// Client returns the configured client with this ID.
func (p *Provider) Client(id string) (Client, bool) {
	for _, c := range p.Config.Clients {
		if c.ID == id {
			return c, true
		}
	}
	return Client{}, false
}

// GroupsEndpoint is the URL of the groups of the principal with object ID oid.
func (p *Provider) GroupsEndpoint(oid string) string {
	return p.Issuer + "/groups/" + oid + "/getMemberObjects"
}

// tail returns the last n lines of the provider's log.
func (p *Provider) tail(n int) string {
	b, err := os.ReadFile(filepath.Join(p.Dir, "provider.log"))
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// httpClient is a client that trusts the provider's CA, with a timeout on
// every step. It keeps no idle connections, so nothing outlives a call.
func (p *Provider) httpClient(jar http.CookieJar) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Jar:     jar,
		Transport: &http.Transport{
			TLSClientConfig:       &tls.Config{RootCAs: p.pool},
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			DisableKeepAlives:     true,
		},
	}
}

// complete validates cfg and fills in its defaults.
func (cfg *Config) complete() error {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return fmt.Errorf("oidcprovider: port %d out of range", cfg.Port)
	}
	if cfg.TenantID == "" {
		cfg.TenantID = randomUUID()
	}
	if !isUUID(cfg.TenantID) {
		return fmt.Errorf("oidcprovider: tenant ID %q is not a UUID", cfg.TenantID)
	}
	if cfg.GroupOverageThreshold < 0 || cfg.GroupsPageSize < 0 || cfg.TokenTTL < 0 || cfg.DevicePollInterval < 0 {
		return errors.New("oidcprovider: negative GroupOverageThreshold, GroupsPageSize, TokenTTL or DevicePollInterval")
	}
	if cfg.GroupOverageThreshold == 0 {
		cfg.GroupOverageThreshold = 200
	}
	if cfg.GroupsPageSize == 0 {
		cfg.GroupsPageSize = 100
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = time.Hour
	}
	if cfg.DevicePollInterval == 0 {
		cfg.DevicePollInterval = time.Second
	}
	if cfg.TokenTTL < time.Second || cfg.DevicePollInterval < time.Second {
		return errors.New("oidcprovider: TokenTTL and DevicePollInterval must be at least a second")
	}

	if len(cfg.Resources) == 0 {
		cfg.Resources = []Resource{{Identifier: DefaultAudience}}
	}
	resources := map[string]bool{}
	for i := range cfg.Resources {
		r := &cfg.Resources[i]
		if u, err := url.Parse(r.Identifier); err != nil || u.Scheme == "" {
			return fmt.Errorf("oidcprovider: resource %q is not an absolute URI", r.Identifier)
		}
		if resources[r.Identifier] {
			return fmt.Errorf("oidcprovider: resource %q listed twice", r.Identifier)
		}
		resources[r.Identifier] = true
		if r.SigningAlg == "" {
			r.SigningAlg = "RS256"
		}
		if r.SigningAlg != "RS256" && r.SigningAlg != "ES256" {
			return fmt.Errorf("oidcprovider: resource %q: signing algorithm %q is neither RS256 nor ES256", r.Identifier, r.SigningAlg)
		}
	}

	objectIDs := map[string]string{}
	claimOID := func(oid, who string) error {
		if !isUUID(oid) {
			return fmt.Errorf("oidcprovider: %s: object ID %q is not a UUID", who, oid)
		}
		if other, ok := objectIDs[strings.ToLower(oid)]; ok {
			return fmt.Errorf("oidcprovider: %s and %s have the same object ID %s", other, who, oid)
		}
		objectIDs[strings.ToLower(oid)] = who
		return nil
	}

	cfg.Users = append([]User(nil), cfg.Users...)
	usernames := map[string]bool{}
	for i := range cfg.Users {
		u := &cfg.Users[i]
		if u.Username == "" || u.Password == "" {
			return fmt.Errorf("oidcprovider: user %d needs a username and a password", i)
		}
		if usernames[strings.ToLower(u.Username)] {
			return fmt.Errorf("oidcprovider: user %q listed twice", u.Username)
		}
		usernames[strings.ToLower(u.Username)] = true
		if u.ObjectID == "" {
			u.ObjectID = NameUUID("user/" + u.Username)
		}
		if err := claimOID(u.ObjectID, "user "+u.Username); err != nil {
			return err
		}
		if u.Name == "" {
			u.Name = u.Username
		}
	}

	harness := Client{
		ID:           HarnessClientID,
		Name:         "oidcprovider test harness",
		GrantTypes:   []string{GrantAuthorizationCode, GrantDeviceCode, GrantRefreshToken},
		RedirectURIs: []string{HarnessRedirectURI},
	}
	cfg.Clients = append(append([]Client(nil), cfg.Clients...), harness)
	clientIDs := map[string]bool{}
	for i := range cfg.Clients {
		c := &cfg.Clients[i]
		if c.ID == "" {
			return fmt.Errorf("oidcprovider: client %d needs an ID", i)
		}
		if clientIDs[c.ID] {
			return fmt.Errorf("oidcprovider: client %q listed twice (or named like the harness's own)", c.ID)
		}
		clientIDs[c.ID] = true
		if c.ObjectID == "" {
			c.ObjectID = NameUUID("client/" + c.ID)
		}
		if err := claimOID(c.ObjectID, "client "+c.ID); err != nil {
			return err
		}
		if c.Name == "" {
			c.Name = c.ID
		}
		if len(c.GrantTypes) == 0 {
			if c.Secret == "" {
				c.GrantTypes = []string{GrantAuthorizationCode, GrantDeviceCode, GrantRefreshToken}
			} else {
				c.GrantTypes = []string{GrantClientCredentials}
			}
		}
		for _, g := range c.GrantTypes {
			switch g {
			case GrantAuthorizationCode, GrantDeviceCode, GrantRefreshToken:
			case GrantClientCredentials:
				if c.Secret == "" {
					return fmt.Errorf("oidcprovider: client %q: client credentials need a secret", c.ID)
				}
			default:
				return fmt.Errorf("oidcprovider: client %q: unknown grant type %q", c.ID, g)
			}
		}
		if len(c.RedirectURIs) == 0 {
			c.RedirectURIs = []string{"http://127.0.0.1/callback", "http://localhost/callback"}
		}
		https := 0
		for _, r := range c.RedirectURIs {
			u, err := url.Parse(r)
			if err != nil || u.Scheme == "" || u.Fragment != "" {
				return fmt.Errorf("oidcprovider: client %q: redirect URI %q is not an absolute URI without a fragment", c.ID, r)
			}
			if u.Scheme == "https" {
				https++
			}
		}
		if c.Secret == "" && https > 0 && https < len(c.RedirectURIs) {
			// oidc-provider refuses https redirect URIs on 127.0.0.1 for
			// native clients, and loopback http ones for web clients.
			return fmt.Errorf("oidcprovider: public client %q: redirect URIs all https (a web application) or none (a native one), not both", c.ID)
		}
		if c.IDTokenSigningAlg == "" {
			c.IDTokenSigningAlg = "RS256"
		}
		if c.IDTokenSigningAlg != "RS256" && c.IDTokenSigningAlg != "ES256" {
			return fmt.Errorf("oidcprovider: client %q: ID token algorithm %q is neither RS256 nor ES256", c.ID, c.IDTokenSigningAlg)
		}
	}
	return nil
}

// writeServerConfig writes the JSON configuration server.js reads.
func writeServerConfig(path string, cfg Config, dir string) error {
	type user struct {
		ID       string         `json:"id"`
		Username string         `json:"username"`
		Password string         `json:"password"`
		Name     string         `json:"name"`
		Groups   []string       `json:"groups"`
		Claims   map[string]any `json:"claims,omitempty"`
	}
	type client struct {
		ClientID          string   `json:"clientId"`
		ClientSecret      string   `json:"clientSecret,omitempty"`
		ApplicationType   string   `json:"applicationType"`
		ObjectID          string   `json:"objectId"`
		Name              string   `json:"name"`
		GrantTypes        []string `json:"grantTypes"`
		RedirectURIs      []string `json:"redirectUris"`
		Groups            []string `json:"groups"`
		IDTokenSigningAlg string   `json:"idTokenSigningAlg"`
	}
	type resource struct {
		Identifier string   `json:"identifier"`
		Audience   string   `json:"audience,omitempty"`
		Scopes     []string `json:"scopes"`
		SigningAlg string   `json:"signingAlg"`
	}
	out := struct {
		Listen struct {
			Host string `json:"host"`
			Port int    `json:"port"`
		} `json:"listen"`
		TLS struct {
			Cert string `json:"cert"`
			Key  string `json:"key"`
		} `json:"tls"`
		Keys                  string     `json:"keys"`
		TenantID              string     `json:"tenantId"`
		GroupOverageThreshold int        `json:"groupOverageThreshold"`
		GroupsPageSize        int        `json:"groupsPageSize"`
		TokenTTL              int        `json:"tokenTTL"`
		DevicePollInterval    int        `json:"devicePollInterval"`
		Resources             []resource `json:"resources"`
		Clients               []client   `json:"clients"`
		Users                 []user     `json:"users"`
	}{
		TenantID:              cfg.TenantID,
		GroupOverageThreshold: cfg.GroupOverageThreshold,
		GroupsPageSize:        cfg.GroupsPageSize,
		TokenTTL:              int((cfg.TokenTTL + time.Second - 1) / time.Second),
		DevicePollInterval:    int((cfg.DevicePollInterval + time.Second - 1) / time.Second),
	}
	out.Listen.Host, out.Listen.Port = cfg.Host, cfg.Port
	out.TLS.Cert, out.TLS.Key = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	out.Keys = filepath.Join(dir, "jwks.json")
	for _, r := range cfg.Resources {
		out.Resources = append(out.Resources, resource{r.Identifier, r.Audience, nonNil(r.Scopes), r.SigningAlg})
	}
	for _, c := range cfg.Clients {
		out.Clients = append(out.Clients, client{c.ID, c.Secret, c.applicationType(), c.ObjectID, c.Name, c.GrantTypes, c.RedirectURIs, nonNil(c.Groups), c.IDTokenSigningAlg})
	}
	for _, u := range cfg.Users {
		out.Users = append(out.Users, user{u.ObjectID, u.Username, u.Password, u.Name, nonNil(u.Groups), u.Claims})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// applicationType is how the client is registered (OpenID Connect Dynamic
// Client Registration's application_type): "web" for a confidential client
// or a public one whose redirect URIs are https, else "native".
func (c Client) applicationType() string {
	if c.Secret != "" || (len(c.RedirectURIs) > 0 && strings.HasPrefix(c.RedirectURIs[0], "https:")) {
		return "web"
	}
	return "native"
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// sourceDir is the directory of server.js: this package's source directory.
func sourceDir() (string, error) {
	if _, file, _, ok := runtime.Caller(0); ok {
		dir := filepath.Dir(file)
		if _, err := os.Stat(filepath.Join(dir, "server.js")); err == nil {
			return dir, nil
		}
	}
	root, err := rig.FindRepoRoot() // built with -trimpath
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "test", "oidcprovider"), nil
}

// NameUUID is a UUID (version 8) derived from name, so tests can know an
// object ID in advance.
func NameUUID(name string) string {
	sum := sha256.Sum256([]byte("tether-oidcprovider/" + name))
	return formatUUID(sum[:16])
}

// GroupIDs returns n distinct group object IDs derived from prefix.
func GroupIDs(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = NameUUID(fmt.Sprintf("group/%s/%d", prefix, i))
	}
	return ids
}

func randomUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return formatUUID(b)
}

func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x80 // version 8
	b[8] = b[8]&0x3f | 0x80 // RFC 9562 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
				return false
			}
		}
	}
	return true
}
