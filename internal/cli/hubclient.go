package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// hubFlags are the flags every command that talks to a hub shares.
type hubFlags struct {
	url string // --hub, else $TETHER_HUB
	ca  string // --hub-ca, else $TETHER_HUB_CA
}

func (f *hubFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.url, "hub", os.Getenv("TETHER_HUB"), "hub URL, https://HOST[:PORT] (env TETHER_HUB)")
	fs.StringVar(&f.ca, "hub-ca", os.Getenv("TETHER_HUB_CA"), "PEM file of the CA that signed the hub's certificate; when set, only it is trusted (env TETHER_HUB_CA)")
}

// parse returns the hub's base URL.
func (f *hubFlags) parse() (*url.URL, error) {
	if f.url == "" {
		return nil, usageError{errors.New("no hub: pass --hub https://HOST[:PORT] or set TETHER_HUB")}
	}
	u, err := url.Parse(f.url)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, usageError{fmt.Errorf("--hub %q must be an https:// URL such as https://hub.example.com:8443", f.url)}
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return u, nil
}

// transport returns an HTTP transport to the hub: the given CA pinned (or
// the system roots), HTTPS_PROXY/NO_PROXY honoured, every step timed out.
func (f *hubFlags) transport() (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = http.ProxyFromEnvironment
	t.TLSHandshakeTimeout = 15 * time.Second
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if f.ca != "" {
		pem, err := os.ReadFile(f.ca)
		if err != nil {
			return nil, fmt.Errorf("read hub CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("hub CA %s holds no PEM certificate", f.ca)
		}
		t.TLSClientConfig.RootCAs = pool
	}
	return t, nil
}
