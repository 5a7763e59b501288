package identity

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fixture: two real issuers, a groups endpoint the Entra-like issuer may
// name, one it may not, and a Verifier trusting both issuers.
type fixture struct {
	clock    *fakeClock
	rsaKey   testKey // the Entra-like issuer's key
	ecKey    testKey // the plain issuer's key
	entra    *testIssuer
	plain    *testIssuer
	groups   *groupServer
	stranger *groupServer
	v        *Verifier
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), rsaKey: newRSAKey(t, "rsa-1"), ecKey: newECKey(t, "ec-1")}
	f.entra = newTestIssuer(t, f.rsaKey)
	f.plain = newTestIssuer(t, f.ecKey)
	f.groups = newGroupServer(t, 250)
	f.stranger = newGroupServer(t, 250)
	f.v = f.newVerifier(t, Config{})
	return f
}

// newVerifier trusts both issuers; cfg adds to the defaults.
func (f *fixture) newVerifier(t *testing.T, cfg Config) *Verifier {
	t.Helper()
	cfg.Issuers = []IssuerConfig{
		{
			URL:                f.entra.url,
			Audiences:          []string{"api://tether", "tether-cli"},
			CABundle:           f.entra.caPEM,
			Tenants:            []string{testTenant},
			GroupEndpointHosts: []string{f.groups.host},
		},
		{
			URL:       f.plain.url,
			Audiences: []string{"tether"},
			CABundle:  f.plain.caPEM,
			Claims:    ClaimMapping{ID: "sub"},
		},
	}
	cfg.Groups = newGroupSource(t, HTTPGroupSourceConfig{CABundle: f.groups.caPEM})
	cfg.Now = f.clock.Now
	v, err := NewVerifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func (f *fixture) user() Principal {
	return Principal{
		ID:     testOID,
		Name:   "Ada Lovelace",
		Type:   TypeUser,
		Issuer: f.entra.url,
		Groups: []string{"0b5c1d2e-0000-4000-8000-000000000001", "0b5c1d2e-0000-4000-8000-000000000002"},
		Expiry: t0.Add(time.Hour),
	}
}

func TestVerify(t *testing.T) {
	f := newFixture(t)
	base := entraClaims(f.entra.url)
	other := newRSAKey(t, "other-1") // an attacker's, or issuer B's, key
	overageFor := func(gs *groupServer, oid string) claims {
		return base.without("groups").with("oid", oid,
			"_claim_names", map[string]string{"groups": "src1"},
			"_claim_sources", map[string]any{"src1": map[string]string{"endpoint": gs.endpoint(oid)}})
	}
	f.groups.set("overage-user", uuids(7, 500))
	f.groups.set("system-member", append(uuids(8, 10), "system:masters"))
	f.stranger.set("overage-user", uuids(7, 500))

	sp := base.without("name", "preferred_username", "groups").with("idtyp", "app", "oid", "0c9e4a8d-5b6f-4e1a-8c2d-3f4a5b6c7d8e")
	plainClaims := claims{"iss": f.plain.url, "aud": "tether", "sub": "user-42", "name": "Grace", "exp": t0.Add(time.Hour).Unix()}

	tests := []struct {
		name    string
		token   string
		want    Principal
		wantErr error
		wantMsg string
	}{
		{name: "user", token: f.rsaKey.sign(t, base), want: f.user()},
		{
			name:  "service principal",
			token: f.rsaKey.sign(t, sp),
			want:  Principal{ID: "0c9e4a8d-5b6f-4e1a-8c2d-3f4a5b6c7d8e", Type: TypeServicePrincipal, Issuer: f.entra.url, Expiry: t0.Add(time.Hour)},
		},
		{
			name:  "name falls back to preferred_username",
			token: f.rsaKey.sign(t, base.without("name")),
			want:  func() Principal { p := f.user(); p.Name = "ada@example.com"; return p }(),
		},
		{
			name:  "ES256 issuer with sub as ID",
			token: f.ecKey.sign(t, plainClaims),
			want:  Principal{ID: "user-42", Name: "Grace", Type: TypeUser, Issuer: f.plain.url, Expiry: t0.Add(time.Hour)},
		},
		{name: "several audiences, azp is ours", token: f.rsaKey.sign(t, base.with("aud", []string{"api://tether", "https://graph.example"}, "azp", "tether-cli")), want: f.user()},
		{
			name:    "several audiences, no azp",
			token:   f.rsaKey.sign(t, base.with("aud", []string{"api://tether", "https://graph.example"})),
			wantErr: ErrWrongAudience, wantMsg: `authorized party (azp) "" is not one this hub accepts`,
		},
		{
			name:    "several audiences, azp is not ours",
			token:   f.rsaKey.sign(t, base.with("aud", []string{"api://tether", "https://graph.example"}, "azp", "some-app")),
			wantErr: ErrWrongAudience, wantMsg: `azp) "some-app"`,
		},
		{
			name:    "wrong audience",
			token:   f.rsaKey.sign(t, base.with("aud", "https://graph.example")),
			wantErr: ErrWrongAudience, wantMsg: `token is for ["https://graph.example"]; this hub accepts ["api://tether" "tether-cli"]`,
		},
		{name: "tenant not allowed", token: f.rsaKey.sign(t, base.with("tid", "contoso")), wantErr: ErrUnknownTenant, wantMsg: `tid "contoso"`},
		{name: "no tenant", token: f.rsaKey.sign(t, base.without("tid")), wantErr: ErrUnknownTenant, wantMsg: "no tid claim"},
		{
			name:    "expired 2 minutes ago",
			token:   f.rsaKey.sign(t, base.with("exp", t0.Add(-2*time.Minute).Unix())),
			wantErr: ErrExpired, wantMsg: "expired 2m0s ago",
		},
		{
			name:  "expired 30 seconds ago, within leeway",
			token: f.rsaKey.sign(t, base.with("exp", t0.Add(-30*time.Second).Unix())),
			want:  func() Principal { p := f.user(); p.Expiry = t0.Add(-30 * time.Second); return p }(),
		},
		{
			name:    "not before 5 minutes from now",
			token:   f.rsaKey.sign(t, base.with("nbf", t0.Add(5*time.Minute).Unix())),
			wantErr: ErrNotYetValid, wantMsg: "valid only in 5m0s",
		},
		{name: "not before 30 seconds from now, within leeway", token: f.rsaKey.sign(t, base.with("nbf", t0.Add(30*time.Second).Unix())), want: f.user()},
		{
			name:    "issued 5 minutes in the future",
			token:   f.rsaKey.sign(t, base.with("iat", t0.Add(5*time.Minute).Unix())),
			wantErr: ErrNotYetValid, wantMsg: "issued 5m0s in the future",
		},
		{name: "no exp", token: f.rsaKey.sign(t, base.without("exp")), wantErr: ErrMalformed, wantMsg: "no exp claim"},
		{name: "alg none", token: unsignedToken(t, base), wantErr: ErrDisallowedAlgorithm, wantMsg: `alg "none": unsigned tokens are never accepted`},
		{
			name:    "HS256 with the issuer's public key as HMAC secret",
			token:   hmacWithPublicKey(t, f.rsaKey, base),
			wantErr: ErrDisallowedAlgorithm, wantMsg: "shared-secret (HMAC)",
		},
		{
			name:    "PS256 is not among the issuer's algorithms",
			token:   f.rsaKey.withAlg(jose.PS256).sign(t, base),
			wantErr: ErrDisallowedAlgorithm, wantMsg: `alg "PS256"; issuer ` + f.entra.url + " allows RS256, ES256",
		},
		{
			name:    "issuer A's token signed by issuer B's key",
			token:   f.ecKey.sign(t, base),
			wantErr: ErrBadSignature, wantMsg: `signing key "ec-1" (ES256) is not among the issuer's published keys`,
		},
		{
			name:    "another key presenting the issuer's kid",
			token:   other.withKid("rsa-1").sign(t, base),
			wantErr: ErrBadSignature, wantMsg: `signature does not verify with the issuer's key "rsa-1"`,
		},
		{
			name:    "tampered payload",
			token:   tamper(t, f.rsaKey.sign(t, base), base.with("oid", "0d000000-0000-4000-8000-000000000000")),
			wantErr: ErrBadSignature,
		},
		{name: "unknown issuer", token: other.sign(t, base.with("iss", "https://evil.example")), wantErr: ErrUnknownIssuer, wantMsg: `iss "https://evil.example" is not a trusted issuer`},
		{name: "no issuer", token: f.rsaKey.sign(t, base.without("iss")), wantErr: ErrMalformed, wantMsg: "no iss claim"},
		{name: "no oid", token: f.rsaKey.sign(t, base.without("oid")), wantErr: ErrMissingID, wantMsg: `token has no "oid" claim`},
		{name: "oid is not a string", token: f.rsaKey.sign(t, base.with("oid", 42)), wantErr: ErrMalformed, wantMsg: `claim "oid" is not a string`},
		{name: "system: ID", token: f.rsaKey.sign(t, base.with("oid", "system:admin")), wantErr: ErrSystemIdentity, wantMsg: `ID "system:admin"`},
		{name: "system:masters group", token: f.rsaKey.sign(t, base.with("groups", []string{"g1", "system:masters"})), wantErr: ErrSystemIdentity, wantMsg: `group "system:masters"`},
		{name: "groups not strings", token: f.rsaKey.sign(t, base.with("groups", []int{1, 2})), wantErr: ErrMalformed, wantMsg: `claim "groups" is not a string or an array of strings`},
		{name: "a megabyte of dots", token: strings.Repeat(".", 1<<20), wantErr: ErrTokenTooLarge, wantMsg: "1048576 bytes, at most 65536"},
		{name: "not a JWT", token: "not-a-jwt", wantErr: ErrMalformed, wantMsg: "want 3 dot-separated parts, got 1"},
		{name: "four parts", token: "a.b.c.d", wantErr: ErrMalformed, wantMsg: "got 4"},
		{name: "JSON serialization", token: `{"payload":"e30","protected":"eyJhbGciOiJSUzI1NiJ9","signature":""}`, wantErr: ErrMalformed, wantMsg: "not a compact JWS"},
		{name: "whitespace inside", token: strings.Replace(f.rsaKey.sign(t, base), ".", ".\n", 1), wantErr: ErrMalformed, wantMsg: `byte '\n'`},
		{
			name:    "a hub assertion presented as a caller token",
			token:   rawJWS(t, map[string]any{"alg": "EdDSA", "typ": AssertionType}, base, func([]byte) []byte { return make([]byte, 64) }),
			wantErr: ErrMalformed, wantMsg: "a hub assertion is not a caller token",
		},
		{name: "header not JSON", token: b64([]byte("alg")) + "." + b64([]byte("{}")) + ".", wantErr: ErrMalformed, wantMsg: "header is not a JSON object"},
		{
			name:  "group overage, 500 groups over two pages",
			token: f.rsaKey.sign(t, overageFor(f.groups, "overage-user")),
			want:  Principal{ID: "overage-user", Name: "Ada Lovelace", Type: TypeUser, Issuer: f.entra.url, Groups: uuids(7, 500), Expiry: t0.Add(time.Hour)},
		},
		{
			name:    "group overage with a system: group",
			token:   f.rsaKey.sign(t, overageFor(f.groups, "system-member")),
			wantErr: ErrSystemIdentity, wantMsg: `group "system:masters"`,
		},
		{
			name:    "group overage on a host not allowed",
			token:   f.rsaKey.sign(t, overageFor(f.stranger, "overage-user")),
			wantErr: ErrGroupOverage, wantMsg: "groups endpoint host \"" + f.stranger.host + "\" is not allowed for issuer " + f.entra.url,
		},
		{
			name: "group overage over plain http",
			token: f.rsaKey.sign(t, base.without("groups").with("_claim_names", map[string]string{"groups": "src1"},
				"_claim_sources", map[string]any{"src1": map[string]string{"endpoint": "http://" + f.groups.host + "/users/overage-user/groups"}})),
			wantErr: ErrGroupOverage, wantMsg: "not an https URL",
		},
		{
			name:    "group overage without endpoint",
			token:   f.rsaKey.sign(t, base.without("groups").with("_claim_names", map[string]string{"groups": "src1"}, "_claim_sources", map[string]any{"src1": map[string]string{}})),
			wantErr: ErrGroupOverage, wantMsg: `claim source "src1" for "groups" has no endpoint`,
		},
		{
			name:    "hasgroups without a source",
			token:   f.rsaKey.sign(t, base.without("groups").with("hasgroups", true)),
			wantErr: ErrGroupOverage, wantMsg: "hasgroups",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.v.Verify(t.Context(), tc.token)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("principal (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
			if !strings.Contains(errString(err), tc.wantMsg) {
				t.Errorf("error %q, want one containing %q", errString(err), tc.wantMsg)
			}
		})
	}

	// The host that is not allowed was never contacted.
	if n := len(f.stranger.seen()); n != 0 {
		t.Errorf("the groups endpoint on a host not allowed got %d requests, want 0", n)
	}
	// One discovery and one key-set fetch per issuer, for all those tokens.
	for _, ti := range []*testIssuer{f.entra, f.plain} {
		if d, k := ti.discoveryHits.Load(), ti.jwksHits.Load(); d != 1 || k != 1 {
			t.Errorf("issuer %s: %d discoveries and %d key-set fetches, want 1 and 1", ti.url, d, k)
		}
	}
}

func TestVerifyNoGroupSource(t *testing.T) {
	f := newFixture(t)
	v, err := NewVerifier(Config{
		Issuers: []IssuerConfig{{URL: f.entra.url, Audiences: []string{"api://tether"}, CABundle: f.entra.caPEM, GroupEndpointHosts: []string{f.groups.host}}},
		Now:     f.clock.Now,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	token := f.rsaKey.sign(t, entraClaims(f.entra.url).without("groups").with("_claim_names", map[string]string{"groups": "src1"},
		"_claim_sources", map[string]any{"src1": map[string]string{"endpoint": f.groups.endpoint("x")}}))
	_, err = v.Verify(t.Context(), token)
	if diff := cmp.Diff(ErrGroupOverage, reason(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("error %v (-want +got):\n%s", err, diff)
	}
}

// TestVerifyKeyRotation: a token signed with a key the hub has not seen
// makes it fetch the key set again, once, and succeed; but never more
// often than KeyRefreshInterval.
func TestVerifyKeyRotation(t *testing.T) {
	f := newFixture(t)
	base := entraClaims(f.entra.url)
	verify := func(k testKey) error {
		_, err := f.v.Verify(t.Context(), k.sign(t, base))
		return err
	}
	if err := verify(f.rsaKey); err != nil {
		t.Fatal(err)
	}
	next := newRSAKey(t, "rsa-2")
	f.entra.publish(next)

	steps := []struct {
		name      string
		advance   time.Duration
		key       testKey
		wantErr   error
		wantFetch int64
	}{
		{name: "new key right after a fetch: refused, no fetch", key: next, wantErr: ErrBadSignature, wantFetch: 1},
		{name: "after the interval: one fetch, accepted", advance: 30 * time.Second, key: next, wantFetch: 2},
		{name: "new key again: cached", key: next, wantFetch: 2},
		{name: "old key still published", key: f.rsaKey, wantFetch: 2},
	}
	for _, s := range steps {
		f.clock.Advance(s.advance)
		err := verify(s.key)
		if diff := cmp.Diff(s.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("%s: error %v (-want +got):\n%s", s.name, err, diff)
		}
		if got := f.entra.jwksHits.Load(); got != s.wantFetch {
			t.Errorf("%s: %d key-set fetches, want %d", s.name, got, s.wantFetch)
		}
	}
}

// TestVerifyUnknownKidFlood: forged tokens naming random keys, or a known
// key with a bad signature, cannot make the hub hammer the issuer.
func TestVerifyUnknownKidFlood(t *testing.T) {
	f := newFixture(t)
	base := entraClaims(f.entra.url)
	attacker := newECKey(t, "")
	forged := make([]string, 0, 200)
	for range 100 {
		kid := make([]byte, 12)
		rand.Read(kid)
		forged = append(forged, attacker.withKid(base64.RawURLEncoding.EncodeToString(kid)).sign(t, base))
	}
	impostor := newRSAKey(t, f.rsaKey.kid) // a known kid, a bad signature
	for i := range 100 {
		forged = append(forged, impostor.sign(t, base.with("jti", i)))
	}
	// The first flood arrives before the hub has fetched anything.
	errs := make([]error, len(forged))
	var wg sync.WaitGroup
	for i, tok := range forged {
		wg.Go(func() { _, errs[i] = f.v.Verify(t.Context(), tok) })
	}
	wg.Wait()
	for i, err := range errs {
		if diff := cmp.Diff(ErrBadSignature, reason(err), cmpopts.EquateErrors()); diff != "" {
			t.Fatalf("forgery %d: error %v (-want +got):\n%s", i, err, diff)
		}
	}
	if got := f.entra.jwksHits.Load(); got > 2 {
		t.Errorf("%d key-set fetches for %d forged tokens within one interval, want at most 2", got, len(forged))
	}
	if got := f.entra.discoveryHits.Load(); got != 1 {
		t.Errorf("%d discoveries, want 1", got)
	}
	// The genuine key still works.
	if _, err := f.v.Verify(t.Context(), f.rsaKey.sign(t, base)); err != nil {
		t.Errorf("genuine token after the flood: %v", err)
	}
}

// TestVerifyIssuerDownAtStart: discovery is lazy, fails with
// ErrIssuerUnavailable (the hub's trouble, not a refusal), is not retried
// within the interval, and is retried after it.
func TestVerifyIssuerDownAtStart(t *testing.T) {
	f := newFixture(t)
	f.entra.discoveryDown.Store(true)
	token := f.rsaKey.sign(t, entraClaims(f.entra.url))

	steps := []struct {
		name          string
		advance       time.Duration
		up            bool
		want          Principal
		wantErr       error
		wantDiscovery int64
	}{
		{name: "down", wantErr: ErrIssuerUnavailable, wantDiscovery: 1},
		{name: "up again, within the interval: not retried", up: true, wantErr: ErrIssuerUnavailable, wantDiscovery: 1},
		{name: "after the interval: retried", advance: 30 * time.Second, up: true, want: f.user(), wantDiscovery: 2},
	}
	for _, s := range steps {
		f.clock.Advance(s.advance)
		f.entra.discoveryDown.Store(!s.up)
		got, err := f.v.Verify(t.Context(), token)
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: principal (-want +got):\n%s", s.name, diff)
		}
		if diff := cmp.Diff(s.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
			t.Errorf("%s: error %v (-want +got):\n%s", s.name, err, diff)
		}
		if got := f.entra.discoveryHits.Load(); got != s.wantDiscovery {
			t.Errorf("%s: %d discoveries, want %d", s.name, got, s.wantDiscovery)
		}
	}
}

// TestVerifyRefreshesOldKeys: a key the issuer withdrew stops being
// trusted once the key set is older than keyMaxAge.
func TestVerifyRefreshesOldKeys(t *testing.T) {
	f := newFixture(t)
	token := func() string {
		c := entraClaims(f.entra.url).with("iat", f.clock.Now().Unix(), "nbf", f.clock.Now().Unix(), "exp", f.clock.Now().Add(time.Hour).Unix())
		return f.rsaKey.sign(t, c)
	}
	if _, err := f.v.Verify(t.Context(), token()); err != nil {
		t.Fatal(err)
	}
	f.entra.mu.Lock()
	f.entra.published = []testKey{newRSAKey(t, "rsa-9")}
	f.entra.mu.Unlock()
	f.clock.Advance(keyMaxAge)
	_, err := f.v.Verify(t.Context(), token())
	if diff := cmp.Diff(ErrBadSignature, reason(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("error %v (-want +got):\n%s", err, diff)
	}
	if got := f.entra.jwksHits.Load(); got != 2 {
		t.Errorf("%d key-set fetches, want 2", got)
	}
}

// TestVerifyOversizedKeySet: the hub reads at most 1 MiB from an issuer.
func TestVerifyOversizedKeySet(t *testing.T) {
	f := newFixture(t)
	f.entra.jwksPadding.Store(maxIssuerResponse)
	_, err := f.v.Verify(t.Context(), f.rsaKey.sign(t, entraClaims(f.entra.url)))
	if diff := cmp.Diff(ErrIssuerUnavailable, reason(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("error %v (-want +got):\n%s", err, diff)
	}
	if want := "larger than 1048576 bytes"; !strings.Contains(errString(err), want) {
		t.Errorf("error %q, want one containing %q", errString(err), want)
	}
}

func TestNewValidates(t *testing.T) {
	good := IssuerConfig{URL: "https://issuer.example", Audiences: []string{"tether"}}
	with := func(mod func(*IssuerConfig)) Config {
		ic := good
		mod(&ic)
		return Config{Issuers: []IssuerConfig{ic}}
	}
	tests := []struct {
		name    string
		cfg     Config
		wantMsg string
	}{
		{name: "good", cfg: with(func(*IssuerConfig) {})},
		{name: "no issuer", cfg: Config{}, wantMsg: "no issuer configured"},
		{name: "plain http", cfg: with(func(ic *IssuerConfig) { ic.URL = "http://issuer.example" }), wantMsg: "not an https URL"},
		{name: "no audience", cfg: with(func(ic *IssuerConfig) { ic.Audiences = nil }), wantMsg: "no audience"},
		{name: "HS256", cfg: with(func(ic *IssuerConfig) { ic.SigningAlgorithms = []string{"HS256"} }), wantMsg: `signing algorithm "HS256" not allowed`},
		{name: "none", cfg: with(func(ic *IssuerConfig) { ic.SigningAlgorithms = []string{"RS256", "none"} }), wantMsg: `signing algorithm "none" not allowed`},
		{name: "bad CA bundle", cfg: with(func(ic *IssuerConfig) { ic.CABundle = []byte("nope") }), wantMsg: "CA bundle holds no PEM certificate"},
		{name: "group host with a path", cfg: with(func(ic *IssuerConfig) { ic.GroupEndpointHosts = []string{"graph.example/v1"} }), wantMsg: "not a host"},
		{name: "twice", cfg: Config{Issuers: []IssuerConfig{good, good}}, wantMsg: "configured twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVerifier(tc.cfg, nil) // no I/O, nothing to close
			if diff := cmp.Diff(tc.wantMsg == "", err == nil); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
			if !strings.Contains(errString(err), tc.wantMsg) {
				t.Errorf("error %q, want one containing %q", errString(err), tc.wantMsg)
			}
		})
	}
}

// TestVerifyStaticKeys: an issuer configured with its keys (the hub's
// embedded issuer) is verified against them alone; its URL is never
// contacted, and a key not configured is refused.
func TestVerifyStaticKeys(t *testing.T) {
	clock := newClock()
	key, other := newECKey(t, "embedded-1"), newECKey(t, "embedded-1")
	const iss = "https://hub.invalid/oidc"
	jwk := jose.JSONWebKey{Key: key.priv.Public(), KeyID: key.kid, Algorithm: "ES256", Use: "sig"}
	v, err := NewVerifier(Config{Issuers: []IssuerConfig{{URL: iss, Audiences: []string{"tether"}, Keys: []jose.JSONWebKey{jwk}}}, Now: clock.Now}, nil)
	if err != nil {
		t.Fatal(err)
	}
	claims := entraClaims(iss).with("aud", "tether")
	p, err := v.Verify(t.Context(), key.sign(t, claims))
	if err != nil {
		t.Fatalf("a token signed with the configured key: %v", err)
	}
	if p.ID != testOID || p.Issuer != iss {
		t.Errorf("principal %+v", p)
	}
	_, err = v.Verify(t.Context(), other.sign(t, claims))
	if diff := cmp.Diff(ErrBadSignature, reason(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("another key with the same kid: error %v (-want +got):\n%s", err, diff)
	}
	_, err = v.Verify(t.Context(), newECKey(t, "embedded-2").sign(t, claims))
	if diff := cmp.Diff(ErrBadSignature, reason(err), cmpopts.EquateErrors()); diff != "" {
		t.Errorf("an unknown kid (nothing to fetch): error %v (-want +got):\n%s", err, diff)
	}
	priv := jose.JSONWebKey{Key: key.priv, KeyID: key.kid}
	if _, err := NewVerifier(Config{Issuers: []IssuerConfig{{URL: iss, Audiences: []string{"tether"}, Keys: []jose.JSONWebKey{priv}}}}, nil); err == nil {
		t.Error("a private key as a configured key was accepted")
	}
}

// TestTrustsForgedAlgorithms: a token naming a trusted issuer is the
// hub's to judge, whatever its alg, so that a forgery is refused at the
// hub instead of passing through as a service-account token.
func TestTrustsForgedAlgorithms(t *testing.T) {
	f := newFixture(t)
	enc := base64.RawURLEncoding
	forged := func(alg, iss string) string {
		return enc.EncodeToString([]byte(`{"alg":"`+alg+`","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(`{"iss":"`+iss+`","oid":"x"}`)) + "."
	}
	for _, tc := range []struct {
		name  string
		token string
		want  bool
	}{
		{"alg none, trusted issuer", forged("none", f.entra.url), true},
		{"HS256, trusted issuer", forged("HS256", f.entra.url) + "c2ln", true},
		{"RS256 signed, trusted issuer", f.rsaKey.sign(t, entraClaims(f.entra.url)), true},
		{"alg none, unknown issuer", forged("none", "https://elsewhere.invalid"), false},
		{"not a JWS", "opaque-service-account-token", false},
		{"too large", forged("none", f.entra.url) + strings.Repeat("A", MaxTokenSize), false},
	} {
		if got := f.v.Trusts(tc.token); got != tc.want {
			t.Errorf("%s: Trusts = %v, want %v", tc.name, got, tc.want)
		}
		if tc.want && tc.name != "RS256 signed, trusted issuer" {
			if _, err := f.v.Verify(t.Context(), tc.token); !errors.Is(err, ErrDisallowedAlgorithm) {
				t.Errorf("%s: Verify error %v, want %v", tc.name, err, ErrDisallowedAlgorithm)
			}
		}
	}
}

// BenchmarkVerifyStaticKey: a full verification of an embedded-issuer
// token (parse, signature, claims), against its baseline, the bare ES256
// signature check every verification must make.
func BenchmarkVerifyStaticKey(b *testing.B) {
	key := newECKey(b, "embedded-1")
	const iss = "https://hub.invalid/oidc"
	jwk := jose.JSONWebKey{Key: key.priv.Public(), KeyID: key.kid, Algorithm: "ES256", Use: "sig"}
	now := time.Now()
	v, err := NewVerifier(Config{Issuers: []IssuerConfig{{URL: iss, Audiences: []string{"tether"}, Keys: []jose.JSONWebKey{jwk}}}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	token := key.sign(b, entraClaims(iss).with("aud", "tether", "exp", now.Add(time.Hour).Unix(), "iat", now.Unix(), "nbf", now.Unix()))
	b.Run("baseline: ES256 signature only", func(b *testing.B) {
		for b.Loop() {
			jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := jws.Verify(jwk); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(b.Context(), token); err != nil {
				b.Fatal(err)
			}
		}
	})
}
