package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/kubeconfig"
)

// signInFlags choose whose tokens: the signed-in person (default) or a
// service principal (--service-principal -u CLIENT_ID).
type signInFlags struct {
	hub      hubFlags
	clientID string
	issuer   string
	// flow and openBrowser are the interactive sign-in (tether login);
	// other commands keep the defaults (device code).
	flow        credentials.Flow
	openBrowser credentials.Browser
}

func (f *signInFlags) register(cmd *cobra.Command) {
	f.hub.register(cmd.Flags())
	cmd.Flags().StringVarP(&f.clientID, "client-id", "u", "", "a service principal's client ID (default: the person signed in with tether login)")
	cmd.Flags().StringVar(&f.issuer, "issuer", os.Getenv("TETHER_ISSUER"), "where to sign in, when the hub trusts several: an issuer URL, or \"embedded\" for the hub's own directory (default: the hub's first; env TETHER_ISSUER)")
}

// source builds the token source for this hub from its /api/v1/auth/config.
func (f *signInFlags) source(ctx context.Context, secret string, interactive bool, prompt io.Writer) (*credentials.Source, error) {
	hc, err := f.hub.client()
	if err != nil {
		return nil, err
	}
	var ac hub.AuthConfig
	if err := hc.do(ctx, http.MethodGet, "/api/v1/auth/config", nil, &ac); err != nil {
		return nil, fmt.Errorf("ask the hub how to sign in: %w", err)
	}
	lc, err := f.pickIssuer(ac.Issuers)
	if err != nil {
		return nil, err
	}
	var issuerTransport http.RoundTripper
	switch {
	case lc.Embedded:
		// The hub's own issuer: trust it as the hub is trusted (--hub-ca).
		issuerTransport = hc.client.Transport
	default:
		it := http.DefaultTransport.(*http.Transport).Clone()
		it.Proxy = http.ProxyFromEnvironment
		if lc.IssuerCA != "" {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM([]byte(lc.IssuerCA)) {
				return nil, errors.New("the hub sent an issuer CA that holds no certificate")
			}
			it.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		issuerTransport = it
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, err
	}
	cache, err := credentials.OpenCache(filepath.Join(home, ".kube", "cache", "tether"))
	if err != nil {
		return nil, err
	}
	cfg := credentials.Config{
		Issuer: lc.Issuer, ClientID: lc.ClientID, Audience: lc.Audience, Cache: cache,
		HTTPClient:  &http.Client{Transport: issuerTransport, Timeout: 30 * time.Second},
		Interactive: interactive, Prompt: prompt, Flow: f.flow, OpenBrowser: f.openBrowser,
	}
	if f.clientID != "" {
		cfg.ClientID, cfg.ClientSecret, cfg.Login = f.clientID, secret, "service-principal"
	}
	return credentials.New(cfg)
}

// pickIssuer chooses among the hub's sign-in issuers: --issuer, else the
// hub's default (the first).
func (f *signInFlags) pickIssuer(issuers []hub.LoginConfig) (hub.LoginConfig, error) {
	if len(issuers) == 0 {
		return hub.LoginConfig{}, errors.New("the hub offers no sign-in; use a service-account token (tether proxy --token)")
	}
	if f.issuer == "" {
		return issuers[0], nil
	}
	var urls []string
	for _, lc := range issuers {
		if lc.Issuer == f.issuer || (f.issuer == "embedded" && lc.Embedded) {
			return lc, nil
		}
		urls = append(urls, lc.Issuer)
	}
	return hub.LoginConfig{}, usageError{fmt.Errorf("--issuer %q is not one of this hub's: %s (or \"embedded\" for the hub's own)", f.issuer, strings.Join(urls, ", "))}
}

func newLoginCmd() *cobra.Command {
	var (
		sf                          signInFlags
		sp, useDeviceCode, authCode bool
		password, passwordFile      string
	)
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Sign in for a hub (browser or device code), or as a service principal (--service-principal -u ID -p SECRET)",
		Long: `Sign in for a hub. A person signs in in a browser (authorization code with
PKCE, answered on a loopback address) when this is a terminal with a browser at
hand, and otherwise with a device code: open the printed URL anywhere and enter
the code. --use-device-code or --auth-code choose. A service principal signs in
with its client ID and secret. Tokens are cached under ~/.kube/cache/tether
(0700/0600) and refreshed before they expire; tether logout removes them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret := password
			if sp {
				if sf.clientID == "" {
					return usageError{errors.New("--service-principal needs -u CLIENT_ID")}
				}
				if passwordFile != "" {
					b, err := readSecret(cmd.InOrStdin(), passwordFile)
					if err != nil {
						return err
					}
					secret = b
				}
				if secret == "" {
					return usageError{errors.New("--service-principal needs the secret: -p SECRET, --password-file FILE, or --password-file - for stdin")}
				}
			} else if sf.clientID != "" {
				return usageError{errors.New("-u is for --service-principal")}
			}
			var err error
			if sf.flow, sf.openBrowser, err = chooseFlow(useDeviceCode, authCode); err != nil {
				return err
			}
			src, err := sf.source(cmd.Context(), secret, true, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if _, err := src.Login(cmd.Context()); err != nil {
				return err
			}
			info(cmd, "signed in; tokens are cached under ~/.kube/cache/tether (0600) and refreshed when needed\n")
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().BoolVar(&sp, "service-principal", false, "sign in as a service principal with client credentials")
	cmd.Flags().StringVarP(&password, "password", "p", "", "the service principal's secret (prefer --password-file)")
	cmd.Flags().StringVar(&passwordFile, "password-file", "", "file holding the secret; - reads it from stdin")
	cmd.Flags().BoolVar(&useDeviceCode, "use-device-code", false, "sign in with a device code even where a browser could open")
	cmd.Flags().BoolVar(&authCode, "auth-code", false, "sign in in a browser (the URL is printed when none opens)")
	return cmd
}

func readSecret(stdin io.Reader, path string) (string, error) {
	var b []byte
	var err error
	if path == "-" {
		b, err = io.ReadAll(io.LimitReader(stdin, 64<<10))
	} else {
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("read the secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

func newGetTokenCmd() *cobra.Command {
	var sf signInFlags
	cmd := &cobra.Command{
		Use:   "get-token",
		Short: "Print an ExecCredential for kubectl (the exec plugin behind tether get-credentials)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// kubectl says in KUBERNETES_EXEC_INFO whether a person is there
			// to answer a sign-in (interactiveMode IfAvailable).
			var info struct {
				Spec struct{ Interactive bool } `json:"spec"`
			}
			json.Unmarshal([]byte(os.Getenv("KUBERNETES_EXEC_INFO")), &info)
			src, err := sf.source(cmd.Context(), "", info.Spec.Interactive && sf.clientID == "", cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			tok, err := src.Get(cmd.Context())
			if err != nil {
				return err
			}
			out, err := src.ExecCredential(tok)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	sf.register(cmd)
	return cmd
}

func newGetCredentialsCmd() *cobra.Command {
	var (
		sf                      signInFlags
		group, name, kubeCtx, f string
	)
	cmd := &cobra.Command{
		Use:   "get-credentials -g GROUP -n NAME",
		Short: "Write a kubeconfig context that reaches the cluster through the hub, with tether get-token as its credential plugin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := validateClusterName(group, name); err != nil {
				return err
			}
			base, err := sf.hub.parse()
			if err != nil {
				return err
			}
			var ca []byte
			if sf.hub.ca != "" {
				if ca, err = os.ReadFile(sf.hub.ca); err != nil {
					return fmt.Errorf("read hub CA: %w", err)
				}
			}
			self, err := os.Executable()
			if err != nil {
				return err
			}
			args := []string{"get-token", "--hub", base.String()}
			if sf.hub.ca != "" {
				caPath, err := filepath.Abs(sf.hub.ca)
				if err != nil {
					return err
				}
				args = append(args, "--hub-ca", caPath)
			}
			if sf.clientID != "" {
				args = append(args, "--client-id", sf.clientID)
			}
			if sf.issuer != "" {
				args = append(args, "--issuer", sf.issuer)
			}
			if kubeCtx == "" {
				kubeCtx = "tether-" + group + "-" + name
			}
			entry := kubeconfig.Entry{Name: kubeCtx, Server: gatewayURL(base, group, name).String(), CAData: ca, Exec: &clientcmdapi.ExecConfig{
				APIVersion: "client.authentication.k8s.io/v1", Command: self, Args: args,
				InteractiveMode: clientcmdapi.IfAvailableExecInteractiveMode, InstallHint: "tether get-token comes with the tether CLI",
			}}
			return writeContext(cmd, f, entry)
		},
	}
	sf.register(cmd)
	clusterNameFlags(cmd, &group, &name)
	cmd.Flags().StringVar(&kubeCtx, "kube-context", "", "name of the kubeconfig context (default tether-GROUP-NAME)")
	cmd.Flags().StringVarP(&f, "file", "f", "", "kubeconfig file to write; - prints it instead")
	return cmd
}

func newLogoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Remove every cached tether token",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			home, err := os.UserHomeDir()
			if err != nil {
				return err
			}
			cache, err := credentials.OpenCache(filepath.Join(home, ".kube", "cache", "tether"))
			if err != nil {
				return err
			}
			keys, err := cache.Logout(cmd.Context(), "")
			if err != nil {
				return err
			}
			info(cmd, "removed %d cached sign-in(s)\n", len(keys))
			return nil
		},
	}
}
