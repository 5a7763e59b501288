package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"tether.dev/tether/internal/atomicfile"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/console"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/issuer"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
	"tether.dev/tether/internal/store/sqlite"
)

func newHubCmd() *cobra.Command {
	var (
		listen, dataDir, certFile, keyFile, replica, issuersFile, urlFlag, locationsFile, storeURL, peerURL, auditLog string
		sans                                                                                                          []string
		accessTTL, heartbeat, offlineAfter, keyMaxIdle, lease, drainDelay, drainGrace                                 time.Duration
		withConsole                                                                                                   bool
		probeAddr, metricsAddr                                                                                        string
	)
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: the endpoint agents dial out to, and the gateway kubectl reaches clusters through",
		Long: `Run the hub. State lives in DATA_DIR (SQLite tether.db, admin.token, and a
self-signed TLS certificate tls.crt/tls.key unless --tls-cert/--tls-key are given).
Clients trust the self-signed certificate with --hub-ca DATA_DIR/tls.crt.

Several replicas share a PostgreSQL database (--store postgres://..., or the
TETHER_STORE environment variable, which keeps the password off the command
line) and the same DATA_DIR files and certificate (see tether hub init); each
tells the others where it is reached with --peer-url. On SIGTERM a replica
drains (readiness fails for --drain-delay, its agents move to other
replicas, requests in flight get --drain-grace); a second signal stops it at once.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger := newLogger(cmd, logJSON)
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return fmt.Errorf("create data directory: %w", err)
			}
			adminHash, created, err := loadAdminToken(filepath.Join(dataDir, "admin.token"))
			if err != nil {
				return err
			}
			if created {
				info(cmd, "admin token written to %s (mode 0600); the admin API needs it\n", filepath.Join(dataDir, "admin.token"))
			}
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usageError{fmt.Errorf("--listen %q: %w", listen, err)}
			}
			cert, err := loadOrCreateCert(dataDir, certFile, keyFile, append(sans, host))
			if err != nil {
				return err
			}
			if storeURL == "" {
				storeURL = os.Getenv("TETHER_STORE")
			}
			st, shared, err := openStore(cmd.Context(), storeURL, dataDir)
			if err != nil {
				return err
			}
			defer st.Close()
			auditSink, closeAudit, err := openAuditLog(auditLog, cmd.OutOrStdout())
			if err != nil {
				return err
			}
			defer closeAudit()
			var peerTLS *tls.Config
			if shared {
				if peerURL, err = defaultPeerURL(peerURL, listen); err != nil {
					return err
				}
			} else if peerURL != "" {
				return usageError{errors.New("--peer-url: replicas share a PostgreSQL store; with the embedded SQLite store the hub runs alone (set --store postgres://...)")}
			}
			hubID, key, err := loadAssertionKey(dataDir)
			if err != nil {
				return err
			}
			base, err := publicURL(urlFlag, listen, sans)
			if err != nil {
				return err
			}
			// The issuer's sign-ins go to the hub's audit trail; the hub is
			// made after the issuer it serves.
			var h *hub.Hub
			recordSignIn := func(e audit.Event) {
				if h != nil {
					h.RecordAudit(e)
				}
			}
			// The metrics come first: the issuer's store calls are timed too.
			metrics := hub.NewMetrics(Version)
			emb, err := newEmbeddedIssuer(base+"/oidc", dataDir, metrics.InstrumentStore(st), accessTTL, recordSignIn, logger)
			if err != nil {
				return err
			}
			verifier, logins, err := loadIssuers(issuersFile, emb, logger)
			if err != nil {
				return err
			}
			defer verifier.Close()
			var consoleHandler func(http.Handler) http.Handler
			if withConsole {
				if consoleHandler, err = newConsole(issuersFile, base, emb, st, logger); err != nil {
					return err
				}
			}
			locations, err := loadLocations(locationsFile, base)
			if err != nil {
				return err
			}
			if peerURL != "" {
				if peerTLS, err = peerTLSConfig(cert, base); err != nil {
					return err
				}
			}
			flags := cmd.Flags()
			probeL, metricsL, err := listenProbes(bindFlag{probeAddr, flags.Changed("health-probe-bind-address")},
				bindFlag{metricsAddr, flags.Changed("metrics-bind-address")}, logger)
			if err != nil {
				return err
			}
			defer closeListeners(probeL, metricsL)
			h, err = hub.New(hub.Config{Metrics: metrics, ProbeListener: probeL, MetricsListener: metricsL,
				Store: st, AdminTokenHash: adminHash, HubID: hubID, AssertionKey: key, Verifier: verifier,
				EmbeddedIssuer: emb.url, IssuerHandler: emb.issuer, Logins: logins, Replica: replica,
				PeerURL: peerURL, PeerTLS: peerTLS, ReplicaLease: lease, DrainDelay: drainDelay, DrainGrace: drainGrace, AuditLog: auditSink,
				HeartbeatInterval: heartbeat, OfflineAfter: offlineAfter, AgentKeyMaxIdle: keyMaxIdle,
				Locations: locations, Version: Version, Console: consoleHandler}, logger)
			if err != nil {
				return usageError{err} // what New refuses came from flags and files
			}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", listen, err)
			}
			return h.Serve(cmd.Context(), l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":8443", "address to serve HTTPS on")
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "directory for the hub's state")
	f.StringVar(&certFile, "tls-cert", "", "PEM certificate to serve (default: a self-signed one in the data directory)")
	f.StringVar(&keyFile, "tls-key", "", "PEM private key of --tls-cert")
	f.StringSliceVar(&sans, "tls-san", nil, "extra DNS names or IPs for the self-signed certificate")
	f.StringVar(&replica, "replica", "", "name of this hub replica (default: the host name)")
	f.StringVar(&issuersFile, "oidc-issuers", "", "JSON file listing the OIDC issuers whose users may sign in (see docs/identity.md)")
	f.StringVar(&urlFlag, "url", "", "the hub's public URL, as clients and agents reach it (default https://HOST:PORT from the first --tls-san, the --listen host or the host name); its embedded issuer is URL/oidc")
	f.DurationVar(&accessTTL, "access-token-ttl", issuer.DefaultAccessTokenTTL, "lifetime of the access tokens the embedded issuer signs (1m to 24h)")
	f.StringVar(&locationsFile, "locations", "", `JSON file listing the hub's locations, [{"name": "East US 2", "url": "https://...", "endpoints": ["HOST:PORT"]}] (see docs/fleet.md; default: one location "local" at --url)`)
	f.DurationVar(&heartbeat, "heartbeat-interval", 30*time.Second, "how often a connected cluster's last-seen time is recorded")
	f.DurationVar(&offlineAfter, "offline-after", 0, "how long after its last heartbeat a cluster shows Offline (default three heartbeat intervals)")
	f.DurationVar(&keyMaxIdle, "agent-key-max-idle", hub.DefaultAgentKeyMaxIdle, "how long an agent key stays valid without contact; then the cluster is Expired and its agent must enroll again (default 90 days)")
	f.StringVar(&storeURL, "store", "", "the hub's store: empty for SQLite in the data directory, or postgres://USER@HOST/DB?... shared by several replicas (default $TETHER_STORE)")
	f.StringVar(&peerURL, "peer-url", "", "where the other replicas reach this one, https://HOST:PORT (with a PostgreSQL store; default https://HOST:PORT from the --listen host or the host name)")
	f.DurationVar(&lease, "replica-lease", 15*time.Second, "how long this replica counts as alive without renewing its record; a replica that stops renewing is taken for dead after it")
	f.DurationVar(&drainDelay, "drain-delay", 5*time.Second, "on SIGTERM, how long readiness fails before agents are moved to other replicas (let load balancers notice)")
	f.DurationVar(&drainGrace, "drain-grace", 30*time.Second, "on SIGTERM, how long requests in flight get to finish after agents were moved; then long streams are ended")
	f.BoolVar(&withConsole, "console", true, "serve the web console at URL/console/ (sign-in with the embedded issuer, and the --oidc-issuers with a consoleClientID)")
	f.StringVar(&probeAddr, "health-probe-bind-address", "0", "also serve /livez and /readyz in plain HTTP on this address (they are always on the HTTPS address); 0 for off")
	f.StringVar(&metricsAddr, "metrics-bind-address", "0", "serve Prometheus /metrics in plain HTTP on this address, e.g. :9090; 0 for off; the same address as --health-probe-bind-address serves both on one port")
	f.StringVar(&auditLog, "audit-log", "", "also write every audit event as a JSON line to this file (appended, 0600), or - for standard output; the store keeps them anyway (tether audit list)")
	cmd.AddCommand(newHubInitCmd())
	return cmd
}

// openAuditLog opens the --audit-log destination: none, stdout for "-", or
// a file appended to, made 0600.
func openAuditLog(path string, stdout io.Writer) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("--audit-log: %w", err)
	}
	return f, func() { f.Close() }, nil
}

// openStore opens the store named by u: SQLite in dataDir when empty, or
// PostgreSQL; shared reports the latter.
func openStore(ctx context.Context, u, dataDir string) (st store.Store, shared bool, err error) {
	switch {
	case u == "":
		st, err := sqlite.Open(ctx, filepath.Join(dataDir, "tether.db"))
		return st, false, err
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		st, err := postgres.Open(ctx, u)
		if err != nil {
			return nil, false, fmt.Errorf("open the PostgreSQL store: %w", err)
		}
		return st, true, nil
	}
	return nil, false, usageError{errors.New("--store: want empty (SQLite in the data directory) or a postgres:// URL")}
}

// defaultPeerURL is --peer-url, else https://HOST:PORT with the --listen
// host or this machine's name, and the --listen port.
func defaultPeerURL(flag, listen string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", usageError{fmt.Errorf("--listen %q: %w", listen, err)}
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("name this replica's peer URL (set --peer-url): %w", err)
		}
	}
	return "https://" + net.JoinHostPort(host, port), nil
}

// peerTLSConfig is how a replica verifies the others: they serve the same
// certificate, so the roots are this replica's own chain (pinned) besides
// the system's, and the name is the public URL's host.
func peerTLSConfig(cert tls.Certificate, base string) (*tls.Config, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	for _, der := range cert.Certificate {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("read the serving certificate: %w", err)
		}
		roots.AddCert(c)
	}
	return &tls.Config{RootCAs: roots, ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}, nil
}

func newHubInitCmd() *cobra.Command {
	var (
		dataDir string
		sans    []string
	)
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Make the files every replica of a hub shares: admin token, identity keys and a self-signed certificate",
		Long: `Make, in DATA_DIR, the files that every replica of one hub must share: admin.token,
hub.id, assertion.key, issuer.key, and a self-signed tls.crt/tls.key for the
--tls-san names. Files that exist are kept. Put them in Kubernetes Secrets for
the hub's Helm chart (deploy/helm/tether-hub).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := os.MkdirAll(dataDir, 0o700); err != nil {
				return fmt.Errorf("create data directory: %w", err)
			}
			if _, _, err := loadAdminToken(filepath.Join(dataDir, "admin.token")); err != nil {
				return err
			}
			if _, _, err := loadAssertionKey(dataDir); err != nil {
				return err
			}
			if _, err := issuer.LoadOrCreateKey(filepath.Join(dataDir, "issuer.key")); err != nil {
				return err
			}
			if _, err := loadOrCreateCert(dataDir, "", "", sans); err != nil {
				return err
			}
			d := dataDir
			fmt.Fprintf(cmd.OutOrStdout(), `The hub's shared files are in %[1]s. For the Helm chart:
  kubectl create secret generic tether-hub-identity --from-file=admin.token=%[1]s/admin.token --from-file=hub.id=%[1]s/hub.id --from-file=assertion.key=%[1]s/assertion.key --from-file=issuer.key=%[1]s/issuer.key
  kubectl create secret tls tether-hub-tls --cert %[1]s/tls.crt --key %[1]s/tls.key
`, d)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "directory to write the files to")
	cmd.Flags().StringSliceVar(&sans, "tls-san", nil, "DNS names or IPs the self-signed certificate covers (the hub's public host)")
	return cmd
}

// loadLocations reads the --locations file at path; without one, the hub
// has one location, "local", reached at its public URL base.
func loadLocations(path, base string) ([]hub.Location, error) {
	if path == "" {
		return []hub.Location{{Name: "local", URL: base}}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read --locations: %w", err)
	}
	var locs []hub.Location
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&locs); err != nil || len(locs) == 0 {
		if err == nil {
			err = errors.New("the list is empty")
		}
		return nil, usageError{fmt.Errorf(`--locations %s: want a JSON list of {"name": "East US 2", "url": "https://HOST[:PORT]", "endpoints": ["HOST:PORT", ...]}: %w`, path, err)}
	}
	return locs, nil
}

func defaultDataDir() string {
	if dir, err := os.UserConfigDir(); err == nil {
		return filepath.Join(dir, "tether", "hub")
	}
	return "tether-hub"
}

// loadAdminToken returns the hash of the admin token in path, creating a
// random token there (0600) on first start.
func loadAdminToken(path string) (hash [sha256.Size]byte, created bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		secret := make([]byte, 32)
		rand.Read(secret)
		b = []byte("tat_" + base64.RawURLEncoding.EncodeToString(secret) + "\n")
		if err := atomicfile.Write(path, b, 0o600); err != nil {
			return hash, false, err
		}
		created = true
	} else if err != nil {
		return hash, false, fmt.Errorf("read admin token: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return hash, false, fmt.Errorf("admin token file %s is empty; delete it to have a new one made", path)
	}
	return hub.HashToken(token), created, nil
}

// issuerFile is one entry of the --oidc-issuers file.
type issuerFile struct {
	URL                string                `json:"url"`
	Audiences          []string              `json:"audiences"`
	CAFile             string                `json:"caFile,omitempty"`
	SigningAlgorithms  []string              `json:"signingAlgorithms,omitempty"`
	Tenants            []string              `json:"tenants,omitempty"`
	GroupEndpointHosts []string              `json:"groupEndpointHosts,omitempty"`
	Claims             identity.ClaimMapping `json:"claims,omitzero"`
	// CLIClientID, on one issuer, is the public client `tether login`
	// signs people in with; that issuer becomes the hub's login issuer.
	CLIClientID string `json:"cliClientID,omitempty"`
	// ConsoleClientID, when set, lets people sign in to the web console
	// with this issuer: the console's client there, whose redirect URI is
	// <hub URL>/console/auth/callback. ConsoleClientSecretFile holds its
	// secret if the issuer made it a confidential client; ConsoleScopes
	// are the scopes asked for (default openid profile offline_access).
	// See docs/console.md.
	ConsoleClientID         string   `json:"consoleClientID,omitempty"`
	ConsoleClientSecretFile string   `json:"consoleClientSecretFile,omitempty"`
	ConsoleScopes           []string `json:"consoleScopes,omitempty"`
}

// embeddedIssuer is the hub's own OIDC provider.
type embeddedIssuer struct {
	url    string
	issuer *issuer.Issuer
}

// embeddedAudience and embeddedCLIClientID are the embedded issuer's
// resource (the aud of its access tokens) and the public client of the
// tether CLI.
const (
	embeddedAudience    = "tether"
	embeddedCLIClientID = "tether-cli"
)

func newEmbeddedIssuer(url, dataDir string, st store.Store, accessTTL time.Duration, record func(audit.Event), logger *slog.Logger) (embeddedIssuer, error) {
	key, err := issuer.LoadOrCreateKey(filepath.Join(dataDir, "issuer.key"))
	if err != nil {
		return embeddedIssuer{}, err
	}
	// url is the hub's URL followed by /oidc; the console is at /console.
	iss, err := issuer.New(issuer.Config{URL: url, Store: st, Key: key, Audience: embeddedAudience, CLIClientID: embeddedCLIClientID, AccessTokenTTL: accessTTL, Audit: record,
		ConsoleClientID: embeddedConsoleClientID, ConsoleRedirectURI: console.RedirectURI(strings.TrimSuffix(url, "/oidc"))}, logger)
	if err != nil {
		return embeddedIssuer{}, fmt.Errorf("embedded issuer: %w", err)
	}
	return embeddedIssuer{url: url, issuer: iss}, nil
}

// loadIssuers builds the verifier of signed-in callers: the embedded
// issuer and those in the --oidc-issuers file at path (none when path is
// empty). The sign-in choices list an external issuer marked with
// cliClientID first, then the embedded issuer.
func loadIssuers(path string, emb embeddedIssuer, logger *slog.Logger) (*identity.Verifier, []hub.LoginConfig, error) {
	var entries []issuerFile
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("read --oidc-issuers: %w", err)
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&entries); err != nil {
			return nil, nil, fmt.Errorf("--oidc-issuers %s: want a JSON list of {\"url\", \"audiences\", \"caFile\", ...}: %w", path, err)
		}
	}
	cfg := identity.Config{Proxy: http.ProxyFromEnvironment, Issuers: []identity.IssuerConfig{{
		URL: emb.url, Audiences: []string{embeddedAudience}, SigningAlgorithms: []string{"ES256"}, Keys: emb.issuer.PublicKeys(),
	}}}
	var logins []hub.LoginConfig
	var cas []byte // the group endpoints live at the issuers: trust their CAs
	for _, e := range entries {
		ic := identity.IssuerConfig{URL: e.URL, Audiences: e.Audiences, SigningAlgorithms: e.SigningAlgorithms, Tenants: e.Tenants,
			GroupEndpointHosts: e.GroupEndpointHosts, Claims: e.Claims}
		if e.CAFile != "" {
			var err error
			if ic.CABundle, err = os.ReadFile(e.CAFile); err != nil {
				return nil, nil, fmt.Errorf("--oidc-issuers: issuer %s: %w", e.URL, err)
			}
			cas = append(append(cas, ic.CABundle...), '\n')
		}
		if e.CLIClientID != "" && len(e.Audiences) > 0 {
			logins = append(logins, hub.LoginConfig{Issuer: e.URL, ClientID: e.CLIClientID, Audience: e.Audiences[0], IssuerCA: string(ic.CABundle)})
		}
		cfg.Issuers = append(cfg.Issuers, ic)
	}
	logins = append(logins, hub.LoginConfig{Issuer: emb.url, ClientID: embeddedCLIClientID, Audience: embeddedAudience, Embedded: true})
	if len(entries) > 0 {
		gs, err := identity.NewHTTPGroupSource(identity.HTTPGroupSourceConfig{CABundle: cas, Proxy: http.ProxyFromEnvironment})
		if err != nil {
			return nil, nil, err
		}
		cfg.Groups = gs
	}
	v, err := identity.NewVerifier(cfg, logger)
	if err != nil {
		return nil, nil, fmt.Errorf("issuers: %w", err)
	}
	return v, logins, nil
}

// loadAssertionKey returns the hub's ID and the key it signs agent
// assertions with, both made on first start (hub.id, assertion.key 0600).
func loadAssertionKey(dataDir string) (string, ed25519.PrivateKey, error) {
	idPath, keyPath := filepath.Join(dataDir, "hub.id"), filepath.Join(dataDir, "assertion.key")
	idBytes, ierr := os.ReadFile(idPath)
	keyPEM, kerr := os.ReadFile(keyPath)
	if errors.Is(ierr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist) {
		id := make([]byte, 16)
		rand.Read(id)
		key, err := identity.GenerateAssertionKey()
		if err != nil {
			return "", nil, err
		}
		if keyPEM, err = identity.MarshalPrivateKeyPEM(key); err != nil {
			return "", nil, err
		}
		idBytes = []byte("tether-hub-" + hex.EncodeToString(id) + "\n")
		if err := atomicfile.Write(keyPath, keyPEM, 0o600); err != nil {
			return "", nil, err
		}
		if err := atomicfile.Write(idPath, idBytes, 0o644); err != nil {
			return "", nil, err
		}
	} else if ierr != nil || kerr != nil {
		return "", nil, fmt.Errorf("read the hub's identity (%s, %s): %w; restore both files, or remove both to make new ones (agents must then enroll again)", idPath, keyPath, errors.Join(ierr, kerr))
	}
	key, err := identity.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	return strings.TrimSpace(string(idBytes)), key, nil
}

// loadOrCreateCert loads --tls-cert/--tls-key, or the self-signed
// certificate in dataDir, making (or remaking) it when it does not cover
// every name in sans.
func loadOrCreateCert(dataDir, certFile, keyFile string, sans []string) (tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		return cert, nil
	}
	certFile, keyFile = filepath.Join(dataDir, "tls.crt"), filepath.Join(dataDir, "tls.key")
	names := []string{"localhost", "127.0.0.1", "::1"}
	if host, err := os.Hostname(); err == nil {
		names = append(names, host)
	}
	for _, s := range sans {
		if s != "" && s != "0.0.0.0" && s != "::" && !slices.Contains(names, s) {
			names = append(names, s)
		}
	}
	if cert, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && covers(cert, names) {
		return cert, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "tether hub (self-signed)"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := atomicfile.Write(keyFile, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := atomicfile.Write(certFile, certPEM, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func covers(cert tls.Certificate, names []string) bool {
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < 30*24*time.Hour {
		return false
	}
	for _, n := range names {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// publicURL is the hub's base URL as clients and agents reach it: --url,
// else https://HOST:PORT with the first --tls-san, the --listen host, or
// this machine's name, and the --listen port.
func publicURL(flag, listen string, sans []string) (string, error) {
	if flag != "" {
		u, err := url.Parse(flag)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", usageError{fmt.Errorf("--url %q: want https://HOST[:PORT][/PATH], the address clients reach the hub at", flag)}
		}
		return strings.TrimSuffix(u.String(), "/"), nil
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", usageError{fmt.Errorf("--listen %q: %w", listen, err)}
	}
	switch ip := net.ParseIP(host); {
	case len(sans) > 0 && sans[0] != "":
		host = sans[0]
	case host == "" || (ip != nil && ip.IsUnspecified()):
		if host, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("name this hub's URL: %w; pass --url", err)
		}
	}
	if port == "443" {
		return "https://" + strings.Trim(net.JoinHostPort(host, ""), ":"), nil
	}
	return "https://" + net.JoinHostPort(host, port), nil
}
