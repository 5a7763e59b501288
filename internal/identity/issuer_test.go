package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the tests' "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is the injected clock; tests advance it instead of sleeping.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testKey is a signing key of a test issuer, or of an attacker.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv crypto.Signer
}

func newRSAKey(t testing.TB, kid string) testKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: jose.RS256, priv: k}
}

func newECKey(t testing.TB, kid string) testKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid: kid, alg: jose.ES256, priv: k}
}

// withAlg is the same key used with another algorithm (RSA: PS256).
func (k testKey) withAlg(alg jose.SignatureAlgorithm) testKey { k.alg = alg; return k }

// withKid is the same key presenting another kid.
func (k testKey) withKid(kid string) testKey { k.kid = kid; return k }

// sign makes a real compact JWS with go-jose.
func (k testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testIssuer is a real OIDC issuer: discovery and JWKS over TLS.
type testIssuer struct {
	srv   *httptest.Server
	url   string
	caPEM []byte

	discoveryDown atomic.Bool
	discoveryHits atomic.Int64
	jwksHits      atomic.Int64
	jwksPadding   atomic.Int64 // bytes of filler added to the key set

	mu        sync.Mutex // guards published
	published []testKey
}

func newTestIssuer(t testing.TB, keys ...testKey) *testIssuer {
	t.Helper()
	ti := &testIssuer{published: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		ti.discoveryHits.Add(1)
		if ti.discoveryDown.Load() {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                ti.url,
			"jwks_uri":                              ti.url + "/keys",
			"authorization_endpoint":                ti.url + "/authorize",
			"token_endpoint":                        ti.url + "/token",
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		ti.jwksHits.Add(1)
		ti.mu.Lock()
		var set jose.JSONWebKeySet
		for _, k := range ti.published {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
		}
		ti.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": set.Keys, "filler": strings.Repeat("x", int(ti.jwksPadding.Load()))})
	})
	ti.srv = httptest.NewTLSServer(mux)
	t.Cleanup(ti.srv.Close)
	ti.url = ti.srv.URL
	ti.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ti.srv.Certificate().Raw})
	return ti
}

func (ti *testIssuer) publish(keys ...testKey) {
	ti.mu.Lock()
	defer ti.mu.Unlock()
	ti.published = append(ti.published, keys...)
}

// claims is a token's payload; with returns a modified copy.
type claims map[string]any

func (c claims) with(kv ...any) claims {
	out := claims{}
	for k, v := range c {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func (c claims) without(names ...string) claims {
	out := c.with()
	for _, n := range names {
		delete(out, n)
	}
	return out
}

const (
	testOID    = "6f1c2b9a-3a41-4c1e-9d0b-5e2f7a8c9d10"
	testTenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
)

// entraClaims are the claims of an Entra-style access token for the hub.
func entraClaims(iss string) claims {
	return claims{
		"iss":                iss,
		"aud":                "api://tether",
		"sub":                "pairwise-subject",
		"oid":                testOID,
		"tid":                testTenant,
		"name":               "Ada Lovelace",
		"preferred_username": "ada@example.com",
		"groups":             []string{"0b5c1d2e-0000-4000-8000-000000000001", "0b5c1d2e-0000-4000-8000-000000000002"},
		"iat":                t0.Add(-time.Minute).Unix(),
		"nbf":                t0.Add(-time.Minute).Unix(),
		"exp":                t0.Add(time.Hour).Unix(),
	}
}

// uuids makes n distinct 36-character group IDs.
func uuids(seed, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%08x-0000-4000-8000-%012x", seed, i)
	}
	return out
}

// unsignedToken is header.payload. with alg none and no signature.
func unsignedToken(t testing.TB, c claims) string {
	t.Helper()
	return rawJWS(t, map[string]any{"alg": "none", "typ": "JWT"}, c, nil)
}

// hmacWithPublicKey is the classic key-confusion forgery: HS256 with the
// issuer's RSA public key (PEM, as published) as the HMAC secret.
func hmacWithPublicKey(t testing.TB, k testKey, c claims) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	return rawJWS(t, map[string]any{"alg": "HS256", "typ": "JWT", "kid": k.kid}, c, func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	})
}

// rawJWS assembles a compact JWS by hand; sign may be nil for none.
func rawJWS(t testing.TB, header map[string]any, payload any, sign func([]byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// tamper replaces the payload of a signed token, keeping its signature.
func tamper(t testing.TB, token string, c claims) string {
	t.Helper()
	parts := strings.SplitN(token, ".", 3)
	p, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return parts[0] + "." + b64(p) + "." + parts[2]
}

// reason is what a caller matches an error on: the refusal's reason, an
// unavailability sentinel, or errOther.
func reason(err error) error {
	var te *TokenError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &te):
		return te.Reason
	case errors.Is(err, ErrIssuerUnavailable):
		return ErrIssuerUnavailable
	case errors.Is(err, ErrGroupsUnavailable):
		return ErrGroupsUnavailable
	}
	return errOther
}

var errOther = errors.New("other error")

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func rsaPublicPEM(t testing.TB) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(newRSAKey(t, "").priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}
