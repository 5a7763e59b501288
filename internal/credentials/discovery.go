package credentials

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

const (
	// maxDiscoveryBody bounds what Discover reads of a discovery document.
	maxDiscoveryBody = 1 << 20
	// discoveryTimeout bounds one discovery request.
	discoveryTimeout = 30 * time.Second
)

// Endpoints are an issuer's OAuth endpoints, from its discovery document.
type Endpoints struct {
	Issuer string `json:"issuer"`
	// AuthorizationURL is needed by the authorization code flow.
	AuthorizationURL string `json:"authorization_endpoint"`
	// TokenURL is needed by every flow.
	TokenURL string `json:"token_endpoint"`
	// DeviceAuthorizationURL is needed by the device code flow.
	DeviceAuthorizationURL string `json:"device_authorization_endpoint"`
}

// Discover reads issuer's /.well-known/openid-configuration with client
// (which carries the CA pool and proxy settings) and checks that it names
// the same issuer.
func Discover(ctx context.Context, client *http.Client, issuer string) (Endpoints, error) {
	issuer = strings.TrimSuffix(issuer, "/")
	u := issuer + "/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, discoveryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Endpoints{}, fmt.Errorf("discover issuer %s: %w", issuer, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return Endpoints{}, fmt.Errorf("discover issuer %s: %w", issuer, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDiscoveryBody+1))
	if err != nil {
		return Endpoints{}, fmt.Errorf("discover issuer %s: read: %w", issuer, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Endpoints{}, fmt.Errorf("discover issuer %s: %s answered %s", issuer, u, resp.Status)
	}
	if len(body) > maxDiscoveryBody {
		return Endpoints{}, fmt.Errorf("discover issuer %s: document larger than %d bytes", issuer, maxDiscoveryBody)
	}
	return parseDiscovery(issuer, body)
}

// parseDiscovery decodes a discovery document of issuer (without a
// trailing slash).
func parseDiscovery(issuer string, body []byte) (Endpoints, error) {
	var e Endpoints
	if err := json.Unmarshal(body, &e); err != nil {
		return Endpoints{}, fmt.Errorf("discover issuer %s: %w", issuer, err)
	}
	if strings.TrimSuffix(e.Issuer, "/") != issuer {
		return Endpoints{}, fmt.Errorf("discover issuer %s: the document names issuer %q", issuer, e.Issuer)
	}
	if e.TokenURL == "" {
		return Endpoints{}, fmt.Errorf("discover issuer %s: no token_endpoint", issuer)
	}
	return e, nil
}
