package identity

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// GroupSource resolves a group overage: it fetches the caller's groups,
// which the issuer left out of the token because there were too many,
// from the source the token names. The hub provides it, so the call to
// the issuer's groups endpoint, with whatever credential it needs, lives
// there; HTTPGroupSource is one implementation.
//
// A *TokenError it returns refuses the caller; any other error means the
// groups could not be had (the Verifier wraps it in ErrGroupsUnavailable).
type GroupSource interface {
	Groups(ctx context.Context, q GroupQuery) ([]string, error)
}

// GroupQuery is what the Verifier knows when it needs a caller's groups.
// Everything in it comes from a token whose signature, issuer, audience
// and lifetime are verified.
type GroupQuery struct {
	// Issuer is the issuer URL.
	Issuer string
	// Endpoint is the groups endpoint the token names, https, on one of
	// the issuer's GroupEndpointHosts.
	Endpoint string
	// Token is the caller's token. Never log it.
	Token string
	// ID is the caller's object ID.
	ID string
	// Tenant is the tid claim, "" if none.
	Tenant string
}

// HTTPGroupSourceConfig configures an HTTPGroupSource.
type HTTPGroupSourceConfig struct {
	// CABundle is PEM certificates to trust for the endpoints' TLS.
	// Empty: the system roots.
	CABundle []byte
	// Timeout bounds one resolution, all pages together. Zero means 10s.
	Timeout time.Duration
	// MaxGroups refuses a caller with more groups. Zero means MaxGroups,
	// which is also the upper bound.
	MaxGroups int
	// MaxBytes bounds the response bodies of one resolution, all pages
	// together. Zero means 4 MiB.
	MaxBytes int64
	// Proxy chooses the HTTP proxy. Nil: direct.
	Proxy ProxyFunc
}

// HTTPGroupSource asks the groups endpoint named in the token, with the
// caller's own token as bearer: a POST of {"securityEnabledOnly":false}
// (the body Microsoft Graph's getMemberObjects takes), answered by
//
//	{"value": ["id1", ...], "@odata.nextLink": "https://same-host/..."}
//
// (entries may also be objects with an "id"), then a GET of each
// @odata.nextLink, which must stay on the endpoint's scheme and host.
// Redirects are not followed.
//
// It suits issuers whose groups endpoint accepts the caller's token, such
// as the embedded issuer. Microsoft Graph accepts only tokens issued for
// Graph, not for the hub's application: for Entra the hub provides a
// GroupSource that calls Graph with a credential of its own.
type HTTPGroupSource struct {
	client    *http.Client
	transport *http.Transport
	timeout   time.Duration
	maxGroups int
	maxBytes  int64
}

// maxGroupPages bounds the requests of one resolution, empty pages
// included.
const maxGroupPages = 200

// NewHTTPGroupSource validates cfg. It does no I/O.
func NewHTTPGroupSource(cfg HTTPGroupSourceConfig) (*HTTPGroupSource, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxGroups == 0 {
		cfg.MaxGroups = MaxGroups
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 4 << 20
	}
	if cfg.Timeout < 0 || cfg.MaxGroups < 0 || cfg.MaxGroups > MaxGroups || cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("identity: group source: timeout, max groups (at most %d) or max bytes out of range", MaxGroups)
	}
	client, transport, err := newHTTPClient(cfg.CABundle, cfg.Timeout, cfg.Proxy, cfg.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("identity: group source: %w", err)
	}
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &HTTPGroupSource{client: client, transport: transport, timeout: cfg.Timeout, maxGroups: cfg.MaxGroups, maxBytes: cfg.MaxBytes}, nil
}

// Close releases idle connections. It is idempotent.
func (s *HTTPGroupSource) Close() { s.transport.CloseIdleConnections() }

// Groups fetches every page of the caller's groups.
func (s *HTTPGroupSource) Groups(ctx context.Context, q GroupQuery) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	first, err := checkHTTPS(q.Endpoint)
	if err != nil {
		return nil, err
	}
	var groups []string
	budget := s.maxBytes
	method, next := http.MethodPost, first.String()
	for page := 1; ; page++ {
		if page > maxGroupPages {
			return nil, fmt.Errorf("groups endpoint gave more than %d pages", maxGroupPages)
		}
		var resp struct {
			Value    []json.RawMessage `json:"value"`
			NextLink string            `json:"@odata.nextLink"`
		}
		if err := s.fetch(ctx, method, next, q.Token, &budget, &resp); err != nil {
			return nil, fmt.Errorf("page %d: %w", page, err)
		}
		for _, v := range resp.Value {
			id, err := groupID(v)
			if err != nil {
				return nil, fmt.Errorf("page %d: %w", page, err)
			}
			groups = append(groups, id)
		}
		if len(groups) > s.maxGroups {
			return nil, refuse(ErrTooManyGroups, "the caller is in more than %d groups", s.maxGroups)
		}
		if resp.NextLink == "" {
			return groups, nil
		}
		u, err := checkHTTPS(resp.NextLink)
		if err != nil {
			return nil, fmt.Errorf("next link: %w", err)
		}
		if !strings.EqualFold(u.Host, first.Host) {
			return nil, fmt.Errorf("next link leaves %s for %s", first.Host, quoteBounded(u.Host))
		}
		method, next = http.MethodGet, u.String()
	}
}

func (s *HTTPGroupSource) fetch(ctx context.Context, method, url, token string, budget *int64, into any) error {
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"securityEnabledOnly":false}`)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, *budget+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > *budget {
		return fmt.Errorf("responses larger than %d bytes in all", s.maxBytes)
	}
	*budget -= int64(len(b))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	if err := json.Unmarshal(b, into); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// groupID reads an entry of "value": a string, or an object with an "id".
func groupID(v json.RawMessage) (string, error) {
	var id string
	if bytes.HasPrefix(v, []byte("{")) {
		var obj claimSet
		if err := json.Unmarshal(v, &obj); err != nil {
			return "", err
		}
		id, _, _ = obj.str("id")
	} else if err := json.Unmarshal(v, &id); err != nil {
		return "", errors.New("group entry is neither a string nor an object")
	}
	if id == "" {
		return "", errors.New("group entry without an ID")
	}
	return id, nil
}
