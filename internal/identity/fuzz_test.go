package identity

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzPeek: whatever a caller sends, peek refuses it with a *TokenError or
// names an issuer and an algorithm that is neither none nor HMAC.
func FuzzPeek(f *testing.F) {
	key := newECKey(f, "ec-1")
	c := entraClaims("https://issuer.example")
	for _, seed := range []string{
		key.sign(f, c),
		unsignedToken(f, c),
		hmacWithPublicKey(f, key, c),
		rawJWS(f, map[string]any{"alg": "RS256"}, "not an object", nil),
		rawJWS(f, map[string]any{"alg": 7}, c, nil),
		rawJWS(f, map[string]any{"alg": "RS256"}, c.with("iss", 7), nil),
		rawJWS(f, map[string]any{"alg": "RS256", "ALG": "none"}, c.with("ISS", "https://other.example"), nil),
		`{"payload":"e30","protected":"eyJhbGciOiJSUzI1NiJ9","signature":""}`,
		"", ".", "..", "...", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.",
		strings.Repeat(".", 1000),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		iss, alg, err := peek(token)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("peek error %v is not a *TokenError", err)
			}
			return
		}
		if iss == "" || alg == "" || strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS") || len(token) > MaxTokenSize {
			t.Fatalf("peek accepted iss %q alg %q of a %d-byte token", iss, alg, len(token))
		}
	})
}

// FuzzClaims: the claim mapping, run on whatever payload a signature
// covered, refuses with a *TokenError or yields a Principal the hub may
// impersonate.
func FuzzClaims(f *testing.F) {
	ti, err := newTrustedIssuer(IssuerConfig{URL: "https://issuer.example", Audiences: []string{"api://tether", "cli"}, Tenants: []string{testTenant}},
		Config{Timeout: time.Second, KeyRefreshInterval: time.Second, Now: time.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	c := entraClaims("https://issuer.example")
	for _, seed := range []claims{
		c,
		c.with("aud", []string{"api://tether", "x"}, "azp", "cli"),
		c.with("groups", []string{"system:masters"}),
		c.with("groups", "single"),
		c.with("oid", "system:admin"),
		c.with("exp", 1e300, "nbf", -1),
		c.with("exp", 1.5e9, "iat", "yesterday"),
		c.without("groups").with("_claim_names", map[string]string{"groups": "s"}, "_claim_sources", map[string]any{"s": map[string]string{"endpoint": "https://graph.example/x"}}),
		c.without("groups").with("_claim_names", "x"),
		c.with("idtyp", "app", "name", 3),
	} {
		b, err := json.Marshal(seed)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`null`))
	f.Add([]byte(`{"oid":"a","oid":"system:x"}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		cs, err := decodeClaimSet(payload)
		if err != nil {
			return
		}
		p, err := ti.principal(t.Context(), nil, "token", cs, t0)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TokenError", err)
			}
			return
		}
		if p.ID == "" || isSystem(p.ID) || slices.ContainsFunc(p.Groups, isSystem) || len(p.Groups) > MaxGroups || p.Expiry.Before(t0.Add(-MaxLeeway)) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

// FuzzAssertionVerify: a mutated assertion is refused with a *TokenError;
// one that is accepted is for this cluster, short-lived, current, and
// names no system: identity.
func FuzzAssertionVerify(f *testing.F) {
	key := seededKey(5)
	s := newSigner(f, key)
	v, err := NewAssertionVerifier(testHub, s.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	hdr := assertionHeaderFor(key)
	for _, seed := range []string{
		mustSign(f, s, Assertion{Cluster: testCluster, Subject: testOID, Groups: []string{"g1", "g2"}, Mode: ModeImpersonate}, t0),
		mustSign(f, s, Assertion{Cluster: testCluster, Mode: ModeToken}, t0),
		mustSign(f, s, Assertion{Cluster: "/groups/prod/clusters/west", Subject: testOID, Mode: ModeImpersonate}, t0),
		handSigned(f, key, hdr, with(assertionClaimsAt(t0), "groups", []string{"system:masters"})),
		handSigned(f, key, with(hdr, "crit", []string{"exp"}), assertionClaimsAt(t0)),
		handSigned(f, key, hdr, with(assertionClaimsAt(t0), "exp", "soon")),
		rawJWS(f, with(hdr, "alg", "none"), assertionClaimsAt(t0), nil),
		"", "..", "a.b.c",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		a, err := v.Verify(token, testCluster, t0)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TokenError", err)
			}
			return
		}
		ok := a.Cluster == testCluster && a.Issuer == testHub &&
			(a.Mode == ModeImpersonate && a.Subject != "" && !isSystem(a.Subject) && !slices.ContainsFunc(a.Groups, isSystem) ||
				a.Mode == ModeToken && a.Subject == "" && len(a.Groups) == 0) &&
			a.Expiry.Sub(a.IssuedAt) <= MaxAssertionLifetime && !t0.After(a.Expiry.Add(AssertionLeeway)) && !a.IssuedAt.After(t0.Add(AssertionLeeway))
		if !ok {
			t.Fatalf("accepted %+v", a)
		}
	})
}
