package identity

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
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
	// Overage: the groups are at an endpoint the token names.
	over := c.without("groups").with("_claim_names", map[string]string{"groups": "src1"})
	for _, endpoint := range []string{
		"https://graph.example/v1.0/users/x/getMemberObjects",
		"https://GRAPH.example:443/x",
		"https://graph.example:8443/x",
		"https://groups.example:8443/x",
		"https://graph.example.evil.test/x",
		"https://user@graph.example/x",
		"http://graph.example/x",
		"https://graph.example\\@evil.test/x",
		"//graph.example/x",
	} {
		b, err := json.Marshal(over.with("_claim_sources", map[string]any{"src1": map[string]string{"endpoint": endpoint}}))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, err := json.Marshal(c.with("tid", "another-tenant"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	b, err = json.Marshal(c.without("groups").with("hasgroups", true))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	overage, err := newTrustedIssuer(IssuerConfig{URL: "https://issuer.example", Audiences: []string{"api://tether", "cli"}, Tenants: []string{testTenant},
		GroupEndpointHosts: []string{"graph.example", "groups.example:8443"}},
		Config{Timeout: time.Second, KeyRefreshInterval: time.Second, Now: time.Now}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
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
		} else if p.ID == "" || isSystem(p.ID) || slices.ContainsFunc(p.Groups, isSystem) || len(p.Groups) > MaxGroups || p.Expiry.Before(t0.Add(-MaxLeeway)) {
			t.Fatalf("accepted %+v", p)
		}

		// The same claims at an issuer that resolves group overage: the
		// group source is asked only about an allowed https endpoint, and
		// only for a token whose tenant and audience are accepted.
		var gs recordingGroups
		p, err = overage.principal(t.Context(), &gs, "token", cs, t0)
		if gs.asked != nil {
			u, perr := url.Parse(gs.asked.Endpoint)
			host := ""
			if perr == nil {
				host = strings.ToLower(u.Host)
			}
			if perr != nil || u.Scheme != "https" || u.User != nil ||
				!slices.Contains([]string{"graph.example", "graph.example:443", "groups.example:8443"}, host) {
				t.Fatalf("the group source was asked about %q", gs.asked.Endpoint)
			}
			if id, _, _ := cs.str("oid"); gs.asked.ID != id || gs.asked.Token != "token" || gs.asked.Tenant != testTenant {
				t.Fatalf("the group source was asked %+v", *gs.asked)
			}
		}
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TokenError", err)
			}
			return
		}
		if tid, _, _ := cs.str("tid"); tid != testTenant {
			t.Fatalf("accepted tenant %q", tid)
		}
		auds, _ := cs.stringList("aud")
		azp, _, _ := cs.str("azp")
		if !slices.ContainsFunc(auds, func(a string) bool { return a == "api://tether" || a == "cli" }) ||
			len(auds) > 1 && azp != "api://tether" && azp != "cli" {
			t.Fatalf("accepted audiences %q, azp %q", auds, azp)
		}
		if gs.asked != nil && !slices.Equal(p.Groups, []string{"overage-1", "overage-2"}) {
			t.Fatalf("overage groups %q", p.Groups)
		}
	})
}

// recordingGroups is a GroupSource that records what it was asked.
type recordingGroups struct{ asked *GroupQuery }

func (g *recordingGroups) Groups(_ context.Context, q GroupQuery) ([]string, error) {
	g.asked = &q
	return []string{"overage-1", "overage-1", "overage-2"}, nil
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

// fuzzIssuers are the issuers FuzzTrusts and FuzzVerify trust.
const (
	fuzzIssuer         = "https://issuer.example"
	fuzzEmbeddedIssuer = "https://hub.example/oidc"
)

// issuerNamed returns the iss claim of a JWT payload, if it has one. The
// name is matched exactly, as an issuer writes it (a payload with "ISS"
// instead could only be a forgery, which no verifier accepts).
func issuerNamed(payload []byte) (string, bool) {
	var c map[string]json.RawMessage
	var iss string
	if json.Unmarshal(payload, &c) != nil || json.Unmarshal(c["iss"], &iss) != nil {
		return "", false
	}
	return iss, true
}

// everyAlgorithm is every signature algorithm go-jose knows.
var everyAlgorithm = []jose.SignatureAlgorithm{
	jose.EdDSA, jose.HS256, jose.HS384, jose.HS512, jose.RS256, jose.RS384, jose.RS512,
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512,
}

// FuzzTrusts: Trusts judges only the iss claim. It is true exactly when the
// token, read as a compact JWS or as a JOSE library (go-jose, which go-oidc
// and so the API server's OIDC authenticator use) reads it, names a trusted
// issuer: such a token is the hub's to verify, never one to pass on to a
// cluster as a service-account token.
func FuzzTrusts(f *testing.F) {
	key := seededKey(7)
	v, err := NewVerifier(Config{Issuers: []IssuerConfig{
		{URL: fuzzIssuer, Audiences: []string{"api://tether"}, Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k1", Algorithm: "EdDSA"}}, SigningAlgorithms: []string{"EdDSA"}},
		{URL: fuzzEmbeddedIssuer, Audiences: []string{"tether"}, Keys: []jose.JSONWebKey{{Key: key.Public(), KeyID: "k2", Algorithm: "EdDSA"}}, SigningAlgorithms: []string{"EdDSA"}},
	}}, nil)
	if err != nil {
		f.Fatal(err)
	}
	sign := func(input []byte) []byte { return ed25519.Sign(key, input) }
	hdr := map[string]any{"alg": "EdDSA", "kid": "k1", "typ": "JWT"}
	for _, seed := range []string{
		rawJWS(f, hdr, entraClaims(fuzzIssuer), sign),
		rawJWS(f, hdr, entraClaims(fuzzEmbeddedIssuer), sign),
		rawJWS(f, map[string]any{"alg": "none"}, entraClaims(fuzzIssuer), nil),
		rawJWS(f, map[string]any{"alg": "HS256", "typ": AssertionType}, entraClaims(fuzzIssuer), sign),
		rawJWS(f, hdr, entraClaims("https://kubernetes.default.svc.cluster.local"), sign),
		rawJWS(f, hdr, entraClaims(fuzzIssuer+"/"), sign),
		rawJWS(f, hdr, map[string]any{"iss": 7}, sign),
		rawJWS(f, hdr, []string{fuzzIssuer}, sign),
		"opaque-service-account-token", "", "..", "e30.e30.e30",
		// White space and the JSON serialization, which go-jose reads.
		strings.Replace(rawJWS(f, hdr, entraClaims(fuzzIssuer), sign), ".", "\t.", 1),
		" " + rawJWS(f, hdr, entraClaims(fuzzIssuer), sign),
		`{"payload":"` + b64([]byte(`{"iss":"`+fuzzIssuer+`"}`)) + `","protected":"` + b64([]byte(`{"alg":"EdDSA"}`)) + `","signature":"AAAA"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		trusted := func(iss string) bool { return iss == fuzzIssuer || iss == fuzzEmbeddedIssuer }
		// The payloads the token may be read as: that of a compact JWS in
		// the strict form, with a header (whatever its alg: none and HMAC
		// are forgeries of the issuer's tokens, for Verify to refuse), and
		// whatever go-jose reads (white space removed, or the JSON form).
		var payloads [][]byte
		const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_."
		strict := !strings.ContainsFunc(token, func(r rune) bool { return !strings.ContainsRune(alphabet, r) })
		if parts := strings.Split(token, "."); strict && len(parts) == 3 {
			h, herr := base64.RawURLEncoding.DecodeString(parts[0])
			p, perr := base64.RawURLEncoding.DecodeString(parts[1])
			_, serr := base64.RawURLEncoding.DecodeString(parts[2])
			var header map[string]json.RawMessage
			if herr == nil && perr == nil && serr == nil && json.Unmarshal(h, &header) == nil && header != nil {
				payloads = append(payloads, p)
			}
		}
		if jws, err := jose.ParseSigned(token, everyAlgorithm); err == nil {
			payloads = append(payloads, jws.UnsafePayloadWithoutVerification())
		}
		want := false
		for _, p := range payloads {
			iss, ok := issuerNamed(p)
			want = want || ok && trusted(iss)
		}
		// The gateway refuses a larger token outright.
		want = want && len(token) <= MaxTokenSize
		if got := v.Trusts(token); got != want {
			t.Fatalf("Trusts(%q) = %v, but the token, read as a JWS, names %q", token, got, payloads)
		}
	})
}

// FuzzVerify: a token Verify accepts is one that go-jose verifies with the
// issuer's configured key, in compact form, and the Principal is what its
// verified claims say. Mutations of a signed token (its header, payload,
// signature, their encoding) are refused unless the signature still covers
// exactly what is read.
func FuzzVerify(f *testing.F) {
	key := seededKey(9)
	jwk := jose.JSONWebKey{Key: key.Public(), KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}
	v, err := NewVerifier(Config{Issuers: []IssuerConfig{{
		URL: fuzzIssuer, Audiences: []string{"api://tether", "cli"}, Tenants: []string{testTenant},
		Keys: []jose.JSONWebKey{jwk}, SigningAlgorithms: []string{"EdDSA", "ES256"},
	}}, Now: func() time.Time { return t0 }}, nil)
	if err != nil {
		f.Fatal(err)
	}
	sign := func(input []byte) []byte { return ed25519.Sign(key, input) }
	hdr := map[string]any{"alg": "EdDSA", "kid": "k1", "typ": "JWT"}
	c := claims(entraClaims(fuzzIssuer))
	good := rawJWS(f, hdr, c, sign)
	for _, seed := range []string{
		good,
		rawJWS(f, hdr, c.with("aud", []string{"api://tether", "other"}, "azp", "cli"), sign),
		rawJWS(f, hdr, c.with("tid", "another-tenant"), sign),
		rawJWS(f, hdr, c.with("oid", "system:admin"), sign),
		rawJWS(f, hdr, c.with("groups", []string{"a", "a", "b"}), sign),
		rawJWS(f, hdr, c.with("idtyp", "app"), sign),
		rawJWS(f, hdr, c.with("exp", t0.Add(-time.Hour).Unix()), sign),
		rawJWS(f, map[string]any{"alg": "EdDSA"}, c, sign),
		rawJWS(f, map[string]any{"alg": "EdDSA", "kid": "k1", "crit": []string{"exp"}}, c, sign),
		rawJWS(f, map[string]any{"alg": "ES256", "kid": "k1"}, c, sign),
		rawJWS(f, map[string]any{"alg": "EdDSA", "kid": "k1", "typ": AssertionType}, c, sign),
		good[:len(good)-1] + "B",
		strings.Replace(good, ".", "=.", 1),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		p, err := v.Verify(t.Context(), token)
		if err != nil {
			var te *TokenError
			if !errors.As(err, &te) {
				t.Fatalf("error %v is not a *TokenError (static keys: nothing is unavailable)", err)
			}
			return
		}
		if strings.Count(token, ".") != 2 || !v.Trusts(token) {
			t.Fatalf("accepted %q, which is not a compact JWS of a trusted issuer", token)
		}
		jws, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA})
		if err != nil {
			t.Fatalf("accepted %q, which go-jose cannot parse: %v", token, err)
		}
		payload, err := jws.Verify(jwk)
		if err != nil {
			t.Fatalf("accepted %q, whose signature go-jose does not verify: %v", token, err)
		}
		cs, err := decodeClaimSet(payload)
		if err != nil {
			t.Fatal(err)
		}
		iss, _, _ := cs.str("iss")
		oid, _, _ := cs.str("oid")
		tid, _, _ := cs.str("tid")
		groups, _ := cs.stringList("groups")
		var unique []string
		for _, g := range groups {
			if !slices.Contains(unique, g) {
				unique = append(unique, g)
			}
		}
		if p.Issuer != iss || iss != fuzzIssuer || p.ID != oid || tid != testTenant || !slices.Equal(p.Groups, unique) || isSystem(p.ID) {
			t.Fatalf("accepted %+v from verified claims %s", p, payload)
		}
	})
}

// FuzzGroupSource: whatever the pages of a groups endpoint say, the source
// asks only the endpoint's own host, at most maxGroupPages times, reads at
// most MaxBytes, and returns either an error or at most MaxGroups
// non-empty group IDs. Pages are separated by a blank line; "{self}" in a
// page is the endpoint's scheme and host.
func FuzzGroupSource(f *testing.F) {
	for _, s := range []string{
		`{"value":["g1","g2"]}`,
		`{"value":["g1"],"@odata.nextLink":"{self}/next"}` + "\n\n" + `{"value":[{"id":"g2"},{"@odata.type":"#microsoft.graph.group","id":"g3"}]}`,
		`{"value":["g1"],"@odata.nextLink":"https://elsewhere.example/next"}`,
		`{"value":["g1"],"@odata.nextLink":"http://{host}/next"}`,
		`{"value":[],"@odata.nextLink":"{self}/again"}`,
		`{"value":["` + strings.Repeat("g", 300) + `"]}`,
		`{"value":[""]}`, `{"value":[7]}`, `{"value":[{"id":""}]}`, `{"value":null}`, `[]`, `not json`,
		`{"value":["a","b","c","d","e","f","g","h","i","j","k"]}`,
	} {
		f.Add([]byte(s))
	}
	var (
		mu    sync.Mutex // guards pages and served
		pages [][]byte
		seen  int
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		page := pages[min(seen, len(pages)-1)]
		seen++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(page)
	}))
	f.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	var requested []string // hosts asked, guarded by mu
	const maxGroups, maxBytes = 10, 4 << 10
	src, err := NewHTTPGroupSource(HTTPGroupSourceConfig{
		CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		Timeout:  10 * time.Second, MaxGroups: maxGroups, MaxBytes: maxBytes,
		Proxy: func(r *http.Request) (*url.URL, error) {
			mu.Lock()
			requested = append(requested, r.URL.Host)
			mu.Unlock()
			if r.URL.Host != host {
				return nil, errors.New("not the test server")
			}
			return nil, nil
		},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(src.Close)

	f.Fuzz(func(t *testing.T, body []byte) {
		body = bytes.ReplaceAll(body, []byte("{self}"), []byte(srv.URL))
		body = bytes.ReplaceAll(body, []byte("{host}"), []byte(host))
		mu.Lock()
		pages, seen, requested = bytes.Split(body, []byte("\n\n")), 0, nil
		mu.Unlock()
		groups, err := src.Groups(t.Context(), GroupQuery{Issuer: "https://issuer.example", Endpoint: srv.URL + "/groups", Token: "token", ID: "me"})
		mu.Lock()
		defer mu.Unlock()
		for _, h := range requested {
			if h != host {
				t.Fatalf("asked %s, not the endpoint's host %s", h, host)
			}
		}
		if len(requested) > maxGroupPages {
			t.Fatalf("%d requests", len(requested))
		}
		if err != nil {
			return
		}
		if len(groups) > maxGroups || slices.Contains(groups, "") {
			t.Fatalf("groups %q", groups)
		}
		served := 0
		for i := range seen {
			served += len(pages[min(i, len(pages)-1)])
		}
		if served > maxBytes {
			t.Fatalf("accepted %d bytes of pages, more than %d", served, maxBytes)
		}
	})
}
