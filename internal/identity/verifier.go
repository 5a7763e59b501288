package identity

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// MaxLeeway is the clock skew tolerated on a caller token's exp, nbf and
// iat.
const MaxLeeway = 60 * time.Second

// Config configures a Verifier.
type Config struct {
	// Issuers are the OIDC issuers the hub trusts; at least one, URLs
	// unique.
	Issuers []IssuerConfig
	// Groups resolves group overage claims. Nil: a token whose groups are
	// in an overage source is refused.
	Groups GroupSource
	// Timeout bounds each discovery or key-set fetch. Zero means 10s.
	Timeout time.Duration
	// KeyRefreshInterval is the least time between two discovery attempts,
	// and between two key-set fetches, of one issuer: the rate limit that
	// keeps a flood of tokens naming unknown keys, or an issuer that is
	// down, from making the hub hammer the issuer. A token signed with a
	// key published less than this before the last fetch is refused until
	// the next one. Zero means 30s.
	KeyRefreshInterval time.Duration
	// Proxy chooses the HTTP proxy toward issuers. Nil: direct.
	Proxy ProxyFunc
	// Now is the clock. Nil means time.Now.
	Now func() time.Time
}

// IssuerConfig is one trusted OIDC issuer.
type IssuerConfig struct {
	// URL is the issuer identifier: exactly the tokens' iss and the
	// discovery document's issuer, https. Required.
	URL string
	// Audiences are the accepted aud values (the hub's client or
	// application IDs); at least one. A token with several audiences must
	// also name one of these as its authorized party (azp).
	Audiences []string
	// CABundle is PEM certificates to trust for the issuer's TLS. Empty:
	// the system roots.
	CABundle []byte
	// SigningAlgorithms are the JWS algorithms accepted from this issuer.
	// Empty means RS256 and ES256. Only asymmetric algorithms (RS*, PS*,
	// ES*, EdDSA) are allowed; "none" and HMAC never are.
	SigningAlgorithms []string
	// Claims maps claims onto a Principal. Zero fields take Entra
	// defaults.
	Claims ClaimMapping
	// Tenants, when set, are the only accepted values of the tid claim; a
	// token without tid is then refused. Empty: tid is not checked.
	Tenants []string
	// GroupEndpointHosts are the hosts a group overage source named in a
	// token may be on ("graph.microsoft.com"; "host:port" to name a port,
	// else the port must be 443). Empty: tokens with overage are refused.
	// A token never makes the hub contact a host not listed here.
	GroupEndpointHosts []string
	// Keys, when set, are the issuer's public signing keys, used as given:
	// discovery and the key set are never fetched. For the hub's embedded
	// issuer, whose keys the hub holds.
	Keys []jose.JSONWebKey
}

// ClaimMapping names the claims a Principal is read from.
type ClaimMapping struct {
	// ID is the claim holding the object ID, the user name the API server
	// sees. Zero means "oid". There is no fallback: a token without it is
	// refused. Set "sub" for issuers that have no object ID claim.
	ID string
	// Name is the display-name claim. Zero means "name".
	Name string
	// NameFallback is read when Name is absent. Zero means
	// "preferred_username".
	NameFallback string
	// Groups is the claim listing group IDs, also the name looked up in
	// _claim_names for an overage. Zero means "groups".
	Groups string
	// Type is the claim telling a service principal from a user. Zero
	// means "idtyp" (Entra; an optional claim in access tokens, which
	// must be enabled on the hub's application registration).
	Type string
	// ServicePrincipal is the value of Type that means a service
	// principal; any other value, or no claim, means a user. Zero means
	// "app".
	ServicePrincipal string
}

func (m ClaimMapping) withDefaults() ClaimMapping {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&m.ID, "oid")
	def(&m.Name, "name")
	def(&m.NameFallback, "preferred_username")
	def(&m.Groups, "groups")
	def(&m.Type, "idtyp")
	def(&m.ServicePrincipal, "app")
	return m
}

// allowedAlgorithms are the asymmetric JWS algorithms an issuer may be
// configured with.
var allowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// Verifier turns callers' OIDC tokens into Principals. It is safe for
// concurrent use and starts no goroutine; discovery and key sets are
// fetched by the verifications that need them.
type Verifier struct {
	issuers map[string]*trustedIssuer
	groups  GroupSource
	now     func() time.Time
}

type trustedIssuer struct {
	cfg        IssuerConfig // with defaults applied
	algs       []jose.SignatureAlgorithm
	audiences  map[string]bool
	tenants    map[string]bool
	groupHosts map[string]bool
	transport  *http.Transport
	keys       *remoteKeys
	oidcConfig oidc.Config
}

// NewVerifier validates cfg and returns a Verifier. It does no I/O.
func NewVerifier(cfg Config, logger *slog.Logger) (*Verifier, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(cfg.Issuers) == 0 {
		return nil, errors.New("identity: no issuer configured")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.KeyRefreshInterval == 0 {
		cfg.KeyRefreshInterval = 30 * time.Second
	}
	if cfg.Timeout < 0 || cfg.KeyRefreshInterval < 0 {
		return nil, errors.New("identity: negative timeout or key refresh interval")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &Verifier{issuers: map[string]*trustedIssuer{}, groups: cfg.Groups, now: cfg.Now}
	for _, ic := range cfg.Issuers {
		ti, err := newTrustedIssuer(ic, cfg, logger)
		if err != nil {
			v.Close()
			return nil, fmt.Errorf("identity: issuer %s: %w", quoteBounded(ic.URL), err)
		}
		if _, dup := v.issuers[ic.URL]; dup {
			v.Close()
			return nil, fmt.Errorf("identity: issuer %s configured twice", quoteBounded(ic.URL))
		}
		v.issuers[ic.URL] = ti
	}
	return v, nil
}

func newTrustedIssuer(ic IssuerConfig, cfg Config, logger *slog.Logger) (*trustedIssuer, error) {
	u, err := checkHTTPS(ic.URL)
	if err != nil {
		return nil, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("issuer URL has a query or fragment")
	}
	ic.Claims = ic.Claims.withDefaults()
	ti := &trustedIssuer{cfg: ic, audiences: map[string]bool{}, tenants: map[string]bool{}, groupHosts: map[string]bool{}}
	if len(ic.Audiences) == 0 {
		return nil, errors.New("no audience")
	}
	for _, a := range ic.Audiences {
		if a == "" {
			return nil, errors.New("empty audience")
		}
		ti.audiences[a] = true
	}
	if len(ic.SigningAlgorithms) == 0 {
		ic.SigningAlgorithms = []string{"RS256", "ES256"}
	}
	for _, a := range ic.SigningAlgorithms {
		if !slices.Contains(allowedAlgorithms, a) {
			return nil, fmt.Errorf("signing algorithm %s not allowed (allowed: %s)", quoteBounded(a), strings.Join(allowedAlgorithms, ", "))
		}
		ti.algs = append(ti.algs, jose.SignatureAlgorithm(a))
	}
	for _, t := range ic.Tenants {
		ti.tenants[t] = true
	}
	for _, h := range ic.GroupEndpointHosts {
		if h == "" || strings.ContainsAny(h, "/@") {
			return nil, fmt.Errorf("group endpoint host %s is not a host or host:port", quoteBounded(h))
		}
		ti.groupHosts[strings.ToLower(h)] = true
	}
	client, transport, err := newHTTPClient(ic.CABundle, cfg.Timeout, cfg.Proxy, maxIssuerResponse)
	if err != nil {
		return nil, err
	}
	ti.transport = transport
	ti.keys = newRemoteKeys(ic.URL, client, cfg.Timeout, cfg.KeyRefreshInterval, cfg.Now, logger)
	if len(ic.Keys) > 0 {
		for _, k := range ic.Keys {
			if !k.IsPublic() || !signingKey(k.Key) {
				return nil, fmt.Errorf("configured key %s is not a public signing key", quoteBounded(k.KeyID))
			}
		}
		ti.keys.static, ti.keys.keys = true, slices.Clone(ic.Keys)
	}
	ti.oidcConfig = oidc.Config{
		// Audience, azp and the time claims are checked by principal():
		// go-oidc takes one client ID, no azp rule, and has no leeway on
		// exp (and a fixed 5 minutes on nbf).
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SupportedSigningAlgs: ic.SigningAlgorithms,
		Now:                  cfg.Now,
	}
	ti.cfg = ic
	return ti, nil
}

// Close releases idle connections to issuers. It is idempotent; the
// Verifier stays usable.
func (v *Verifier) Close() {
	for _, ti := range v.issuers {
		ti.transport.CloseIdleConnections()
	}
}

// Verify checks a caller's bearer token and returns who the caller is.
//
// A refusal is a *TokenError (answer 401 with its message). An error
// wrapping ErrIssuerUnavailable or ErrGroupsUnavailable is the hub's
// trouble, not the caller's (answer 503).
func (v *Verifier) Verify(ctx context.Context, token string) (Principal, error) {
	iss, alg, err := peek(token)
	if err != nil {
		return Principal{}, err
	}
	ti, ok := v.issuers[iss]
	if !ok {
		return Principal{}, refuse(ErrUnknownIssuer, "iss %s is not a trusted issuer", quoteBounded(iss))
	}
	if !slices.Contains(ti.algs, jose.SignatureAlgorithm(alg)) {
		return Principal{}, refuse(ErrDisallowedAlgorithm, "%s; issuer %s allows %s", describeAlg(alg), iss, strings.Join(ti.cfg.SigningAlgorithms, ", "))
	}
	// go-oidc parses with the issuer's algorithms, has the key set check
	// the signature, and checks iss; the rest is ours.
	ks := &callKeySet{keys: ti.keys, algs: ti.algs}
	idToken, err := oidc.NewVerifier(ti.cfg.URL, ks, &ti.oidcConfig).Verify(ctx, token)
	if err != nil {
		if ks.err != nil {
			return Principal{}, ks.err
		}
		return Principal{}, refuse(ErrMalformed, "%v", err)
	}
	var claims claimSet
	if err := idToken.Claims(&claims); err != nil {
		return Principal{}, refuse(ErrMalformed, "claims are not a JSON object")
	}
	return ti.principal(ctx, v.groups, token, claims, v.now())
}

// Trusts reports whether token claims to come from one of the configured
// issuers (its iss, read without verifying anything). The hub uses it to
// tell a signed-in caller's token, which it must verify, from a cluster's
// service-account token, which only the API server can judge. A token that
// claims a trusted issuer and fails Verify is refused, never passed on.
//
// Trusts judges nothing but the iss claim: a token naming a trusted issuer
// with alg none, an HMAC alg or a hub assertion's type is still that
// issuer's (forged) token, for Verify to refuse.
//
// The iss is read the way any JOSE library might read the token, not only
// as the strict compact form Verify accepts: go-jose (and so go-oidc and
// the API server's OIDC authenticator) also takes the JSON serialization
// and ignores white space anywhere. A trusted issuer's token so disguised
// must still be the hub's to refuse, not pass through to a cluster whose
// API server may trust the same issuer.
func (v *Verifier) Trusts(token string) bool {
	if len(token) > MaxTokenSize {
		return false
	}
	var payload []byte
	if jws, err := splitCompact(token); err == nil {
		payload = jws.payload
	} else if jws, err := jose.ParseSigned(token, joseAlgorithms); err == nil {
		payload = jws.UnsafePayloadWithoutVerification()
	}
	claims, err := decodeClaimSet(payload)
	if err != nil {
		return false
	}
	iss, ok, err := claims.str("iss")
	if err != nil || !ok {
		return false
	}
	_, ok = v.issuers[iss]
	return ok
}

// joseAlgorithms is every signature algorithm go-jose parses: Trusts reads
// a token as it would, whatever its alg.
var joseAlgorithms = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

// peek reads, without verifying anything, what chooses the issuer and its
// key: the iss claim and the alg header. It refuses what no issuer could
// accept: oversized input, anything but a compact JWS, alg none, HMAC,
// and the hub's own assertions.
func peek(token string) (iss, alg string, err error) {
	if len(token) > MaxTokenSize {
		return "", "", refuse(ErrTokenTooLarge, "%d bytes, at most %d", len(token), MaxTokenSize)
	}
	jws, err := splitCompact(token)
	if err != nil {
		return "", "", err
	}
	if alg, err = headerString(jws.header, "alg"); err != nil {
		return "", "", err
	}
	switch {
	case alg == "" || strings.EqualFold(alg, "none"):
		return "", "", refuse(ErrDisallowedAlgorithm, "%s: unsigned tokens are never accepted", describeAlg(alg))
	case strings.HasPrefix(strings.ToUpper(alg), "HS"):
		return "", "", refuse(ErrDisallowedAlgorithm, "%s: shared-secret (HMAC) tokens are never accepted", describeAlg(alg))
	}
	typ, err := headerString(jws.header, "typ")
	if err != nil {
		return "", "", err
	}
	if strings.EqualFold(typ, AssertionType) {
		return "", "", refuse(ErrMalformed, "a hub assertion is not a caller token")
	}
	claims, err := decodeClaimSet(jws.payload)
	if err != nil {
		return "", "", err
	}
	iss, ok, err := claims.str("iss")
	if err != nil {
		return "", "", err
	}
	if !ok || iss == "" {
		return "", "", refuse(ErrMalformed, "no iss claim")
	}
	return iss, alg, nil
}

// principal checks what go-oidc left to us on a token whose signature and
// issuer are verified, and maps its claims.
func (ti *trustedIssuer) principal(ctx context.Context, gs GroupSource, token string, c claimSet, now time.Time) (Principal, error) {
	if err := ti.checkAudience(c); err != nil {
		return Principal{}, err
	}
	exp, err := checkTimes(c, now)
	if err != nil {
		return Principal{}, err
	}
	tid, _, err := c.str("tid")
	if err != nil {
		return Principal{}, err
	}
	if len(ti.tenants) > 0 && !ti.tenants[tid] {
		if tid == "" {
			return Principal{}, refuse(ErrUnknownTenant, "token has no tid claim")
		}
		return Principal{}, refuse(ErrUnknownTenant, "tid %s is not an allowed tenant", quoteBounded(tid))
	}
	m := ti.cfg.Claims
	p := Principal{Issuer: ti.cfg.URL, Type: TypeUser, Expiry: exp}
	id, _, err := c.str(m.ID)
	switch {
	case err != nil:
		return Principal{}, err
	case id == "":
		return Principal{}, refuse(ErrMissingID, "token has no %s claim", quoteBounded(m.ID))
	case len(id) > maxNameLen:
		return Principal{}, refuse(ErrMalformed, "%s claim longer than %d bytes", quoteBounded(m.ID), maxNameLen)
	case isSystem(id):
		return Principal{}, refuse(ErrSystemIdentity, "ID %s", quoteBounded(id))
	}
	p.ID = id
	if p.Name, _, err = c.str(m.Name); err != nil {
		return Principal{}, err
	}
	if p.Name == "" {
		if p.Name, _, err = c.str(m.NameFallback); err != nil {
			return Principal{}, err
		}
	}
	typ, _, err := c.str(m.Type)
	if err != nil {
		return Principal{}, err
	}
	if typ == m.ServicePrincipal {
		p.Type = TypeServicePrincipal
	}
	groups, err := ti.groups(ctx, gs, token, c, GroupQuery{Issuer: ti.cfg.URL, Token: token, ID: id, Tenant: tid})
	if err != nil {
		return Principal{}, err
	}
	if p.Groups, err = checkGroups(groups); err != nil {
		return Principal{}, err
	}
	return p, nil
}

func (ti *trustedIssuer) checkAudience(c claimSet) error {
	auds, err := c.stringList("aud")
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(auds, func(a string) bool { return ti.audiences[a] }) {
		return refuse(ErrWrongAudience, "token is for %s; this hub accepts %s", boundedList(auds), boundedList(ti.cfg.Audiences))
	}
	if len(auds) > 1 {
		azp, _, err := c.str("azp")
		if err != nil {
			return err
		}
		if !ti.audiences[azp] {
			return refuse(ErrWrongAudience, "token has %d audiences and its authorized party (azp) %s is not one this hub accepts", len(auds), quoteBounded(azp))
		}
	}
	return nil
}

// checkTimes applies exp (required), nbf and iat with MaxLeeway.
func checkTimes(c claimSet, now time.Time) (time.Time, error) {
	exp, ok, err := c.numericDate("exp")
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, refuse(ErrMalformed, "no exp claim")
	}
	if late := now.Sub(exp); late > MaxLeeway {
		return time.Time{}, refuse(ErrExpired, "expired %s ago (at %s; leeway %s)", ago(late), exp.UTC().Format(time.RFC3339), MaxLeeway)
	}
	nbf, ok, err := c.numericDate("nbf")
	if err != nil {
		return time.Time{}, err
	}
	if early := nbf.Sub(now); ok && early > MaxLeeway {
		return time.Time{}, refuse(ErrNotYetValid, "valid only in %s (nbf %s; leeway %s); check the clocks", ago(early), nbf.UTC().Format(time.RFC3339), MaxLeeway)
	}
	iat, ok, err := c.numericDate("iat")
	if err != nil {
		return time.Time{}, err
	}
	if early := iat.Sub(now); ok && early > MaxLeeway {
		return time.Time{}, refuse(ErrNotYetValid, "issued %s in the future (iat %s; leeway %s); check the clocks", ago(early), iat.UTC().Format(time.RFC3339), MaxLeeway)
	}
	return exp, nil
}

// groups returns the inline groups, or resolves an overage: Entra leaves
// the groups claim out and names a source instead,
//
//	"_claim_names":   {"groups": "src1"},
//	"_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/OID/getMemberObjects"}}
//
// The endpoint's host must be one of the issuer's GroupEndpointHosts before
// any GroupSource sees it.
func (ti *trustedIssuer) groups(ctx context.Context, gs GroupSource, token string, c claimSet, q GroupQuery) ([]string, error) {
	claimName := ti.cfg.Claims.Groups
	var names map[string]string
	if c.has("_claim_names") {
		if err := json.Unmarshal(c["_claim_names"], &names); err != nil {
			return nil, refuse(ErrMalformed, "_claim_names is not an object of strings")
		}
	}
	src, overage := names[claimName]
	if !overage {
		groups, err := c.stringList(claimName)
		if err != nil {
			return nil, err
		}
		var hasGroups bool
		if len(groups) == 0 && c.has("hasgroups") && json.Unmarshal(c["hasgroups"], &hasGroups) == nil && hasGroups {
			return nil, refuse(ErrGroupOverage, "token says the caller has groups (hasgroups) but names no source; use a token from the authorization code or device code flow")
		}
		return groups, nil
	}
	var sources map[string]claimSet
	if err := json.Unmarshal(c["_claim_sources"], &sources); err != nil {
		return nil, refuse(ErrMalformed, "_claim_sources is not an object of objects")
	}
	endpoint, _, err := sources[src].str("endpoint")
	if err != nil {
		return nil, err
	}
	if endpoint == "" {
		return nil, refuse(ErrGroupOverage, "claim source %s for %s has no endpoint", quoteBounded(src), quoteBounded(claimName))
	}
	u, err := checkHTTPS(endpoint)
	if err != nil {
		return nil, refuse(ErrGroupOverage, "groups endpoint: %v", err)
	}
	if !ti.groupHostAllowed(u) {
		return nil, refuse(ErrGroupOverage, "groups endpoint host %s is not allowed for issuer %s", quoteBounded(u.Host), ti.cfg.URL)
	}
	if gs == nil {
		return nil, refuse(ErrGroupOverage, "the caller's groups are in an overage source and the hub has no group source configured")
	}
	q.Endpoint = u.String()
	groups, err := gs.Groups(ctx, q)
	if err != nil {
		var te *TokenError
		if errors.As(err, &te) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: overage groups from %s: %w", ErrGroupsUnavailable, u.Host, err)
	}
	return groups, nil
}

func (ti *trustedIssuer) groupHostAllowed(u *url.URL) bool {
	host := strings.ToLower(u.Host)
	if ti.groupHosts[host] {
		return true
	}
	port := u.Port()
	return (port == "" || port == "443") && ti.groupHosts[strings.ToLower(u.Hostname())]
}

func boundedList(s []string) string {
	const max = 5
	q := make([]string, 0, max)
	for i, v := range s {
		if i == max {
			q = append(q, fmt.Sprintf("and %d more", len(s)-max))
			break
		}
		q = append(q, quoteBounded(v))
	}
	return "[" + strings.Join(q, " ") + "]"
}
