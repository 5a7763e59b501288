package cli

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"tether.dev/tether/internal/console"
	"tether.dev/tether/internal/store"
)

// embeddedConsoleClientID is the web console's client at the embedded
// issuer; its one redirect URI is the hub URL's /console/auth/callback.
const embeddedConsoleClientID = "tether-console"

// newConsole makes the hub's web console at base (the hub's public URL).
// People sign in with the external issuers of the --oidc-issuers file at
// issuersPath that name a consoleClientID (in the file's order), then with
// the embedded issuer.
//
// The hub serves its routes at the root of its host; behind a --url with
// a path (a proxy that strips it) the console is not served, with a
// warning: its pages' links and its redirect URI would not line up.
func newConsole(issuersPath, base string, emb embeddedIssuer, st store.Store, logger *slog.Logger) (func(http.Handler) http.Handler, error) {
	if u, err := url.Parse(base); err != nil || u.Path != "" {
		logger.Warn("web console not served: the hub's URL has a path; serve the hub at the root of a host to have it", "url", base)
		return nil, nil
	}
	var issuers []console.Issuer
	if issuersPath != "" {
		b, err := os.ReadFile(issuersPath)
		if err != nil {
			return nil, fmt.Errorf("read --oidc-issuers: %w", err)
		}
		var entries []issuerFile
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&entries); err != nil {
			return nil, fmt.Errorf("--oidc-issuers %s: %w", issuersPath, err)
		}
		for _, e := range entries {
			if e.ConsoleClientID == "" {
				if e.ConsoleClientSecretFile != "" || e.ConsoleScopes != nil {
					return nil, usageError{fmt.Errorf("--oidc-issuers: issuer %s: consoleClientSecretFile and consoleScopes need consoleClientID", e.URL)}
				}
				continue
			}
			is, err := externalConsoleIssuer(e)
			if err != nil {
				return nil, err
			}
			issuers = append(issuers, is)
		}
	}
	issuers = append(issuers, console.Issuer{Name: "this hub's directory", URL: emb.url, ClientID: embeddedConsoleClientID, Embedded: true})
	c, err := console.New(console.Config{URL: base + console.Path, HubURL: base, Store: st, Issuers: issuers}, logger)
	if err != nil {
		return nil, usageError{err}
	}
	return c.Handler, nil
}

// externalConsoleIssuer is the console's client at an issuer of the
// --oidc-issuers file: its client ID, secret (from a file) and scopes, and
// an HTTP client that trusts the issuer's CA and goes through the proxy.
func externalConsoleIssuer(e issuerFile) (console.Issuer, error) {
	is := console.Issuer{URL: e.URL, ClientID: e.ConsoleClientID, Scopes: e.ConsoleScopes}
	if e.ConsoleClientSecretFile != "" {
		b, err := os.ReadFile(e.ConsoleClientSecretFile)
		if err != nil {
			return is, fmt.Errorf("--oidc-issuers: issuer %s: console client secret: %w", e.URL, err)
		}
		if is.ClientSecret = strings.TrimSpace(string(b)); is.ClientSecret == "" {
			return is, fmt.Errorf("--oidc-issuers: issuer %s: the console client secret file %s is empty", e.URL, e.ConsoleClientSecretFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = http.ProxyFromEnvironment
	if e.CAFile != "" {
		pem, err := os.ReadFile(e.CAFile)
		if err != nil {
			return is, fmt.Errorf("--oidc-issuers: issuer %s: %w", e.URL, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return is, fmt.Errorf("--oidc-issuers: issuer %s: no certificate in %s", e.URL, e.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	is.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return is, nil
}
