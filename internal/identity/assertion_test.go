package identity

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	testHub     = "hub-1"
	testCluster = "/groups/prod/clusters/east"
)

// seededKey is deterministic, so fuzz seeds are stable.
func seededKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

func newSigner(t testing.TB, key ed25519.PrivateKey) *AssertionSigner {
	t.Helper()
	s, err := NewAssertionSigner(testHub, key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSign(t testing.TB, s *AssertionSigner, a Assertion, now time.Time) string {
	t.Helper()
	tok, err := s.Sign(a, now)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// handSigned signs arbitrary header and claims with key, bypassing the
// signer's checks, to show the verifier checks again.
func handSigned(t testing.TB, key ed25519.PrivateKey, header map[string]any, c map[string]any) string {
	t.Helper()
	return rawJWS(t, header, c, func(input []byte) []byte { return ed25519.Sign(key, input) })
}

func assertionHeaderFor(key ed25519.PrivateKey) map[string]any {
	return map[string]any{"alg": "EdDSA", "typ": AssertionType, "kid": KeyID(key.Public().(ed25519.PublicKey))}
}

func assertionClaimsAt(now time.Time) map[string]any {
	return map[string]any{"iss": testHub, "aud": testCluster, "sub": testOID, "groups": []string{"g1"}, "mode": "impersonate",
		"iat": now.Unix(), "exp": now.Add(30 * time.Second).Unix(), "jti": "j1"}
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func with(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestAssertion(t *testing.T) {
	oldKey, newKey, strayKey := seededKey(1), seededKey(2), seededKey(3)
	oldSigner, newSigner, straySigner := newSigner(t, oldKey), newSigner(t, newKey), newSigner(t, strayKey)
	rotating, err := NewAssertionVerifier(testHub, oldSigner.PublicKey(), newSigner.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	newOnly, err := NewAssertionVerifier(testHub, newSigner.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	user := Assertion{Cluster: testCluster, Subject: testOID, Groups: []string{"g1", "g2"}, Mode: ModeImpersonate, ID: "j1"}
	want := user
	want.Issuer, want.IssuedAt, want.Expiry = testHub, t0, t0.Add(DefaultAssertionLifetime)
	many := user
	many.Groups = uuids(9, 500)
	wantMany := want
	wantMany.Groups = many.Groups
	sa := Assertion{Cluster: testCluster, Mode: ModeToken, ID: "j2"}
	wantSA := sa
	wantSA.Issuer, wantSA.IssuedAt, wantSA.Expiry = testHub, t0, t0.Add(DefaultAssertionLifetime)

	good := mustSign(t, newSigner, user, t0)
	parts := strings.SplitN(good, ".", 3)
	publicKeyAsHMAC := func(input []byte) []byte {
		m := hmac.New(sha256.New, newSigner.PublicKey())
		m.Write(input)
		return m.Sum(nil)
	}
	hdr := assertionHeaderFor(newKey)

	tests := []struct {
		name     string
		verifier *AssertionVerifier
		token    string
		cluster  string
		now      time.Time
		want     Assertion
		wantErr  error
		wantMsg  string
	}{
		{name: "round trip", verifier: newOnly, token: good, want: want},
		{name: "token pass-through", verifier: newOnly, token: mustSign(t, newSigner, sa, t0), want: wantSA},
		{name: "500 groups", verifier: newOnly, token: mustSign(t, newSigner, many, t0), want: wantMany},
		{name: "rotation: old key", verifier: rotating, token: mustSign(t, oldSigner, user, t0), want: want},
		{name: "rotation: new key", verifier: rotating, token: good, want: want},
		{name: "rotation done: old key refused", verifier: newOnly, token: mustSign(t, oldSigner, user, t0), wantErr: ErrBadSignature, wantMsg: "not a hub key this agent enrolled with"},
		{name: "another key", verifier: rotating, token: mustSign(t, straySigner, user, t0), wantErr: ErrBadSignature},
		{name: "another key presenting a trusted kid", verifier: newOnly, token: handSigned(t, strayKey, hdr, assertionClaimsAt(t0)), wantErr: ErrBadSignature, wantMsg: "signature does not verify"},
		{name: "wrong cluster", verifier: newOnly, token: good, cluster: "/groups/prod/clusters/west", wantErr: ErrWrongAudience, wantMsg: `assertion is for cluster "/groups/prod/clusters/east", not "/groups/prod/clusters/west"`},
		{name: "expired", verifier: newOnly, token: good, now: t0.Add(2 * time.Minute), wantErr: ErrExpired, wantMsg: "expired 1m30s ago"},
		{name: "expired within leeway", verifier: newOnly, token: good, now: t0.Add(34 * time.Second), want: want},
		{name: "issued in the future", verifier: newOnly, token: good, now: t0.Add(-time.Minute), wantErr: ErrNotYetValid, wantMsg: "issued 1m0s in the future"},
		{name: "issued in the future within leeway", verifier: newOnly, token: good, now: t0.Add(-4 * time.Second), want: want},
		{name: "tampered payload", verifier: newOnly, token: parts[0] + "." + b64([]byte(`{"iss":"hub-1","aud":"/groups/prod/clusters/east","sub":"x","groups":["system:masters"],"mode":"impersonate","iat":1,"exp":2,"jti":"j"}`)) + "." + parts[2], wantErr: ErrBadSignature},
		{name: "tampered signature", verifier: newOnly, token: parts[0] + "." + parts[1] + "." + b64(make([]byte, 64)), wantErr: ErrBadSignature},
		{name: "alg none", verifier: newOnly, token: rawJWS(t, with(hdr, "alg", "none"), assertionClaimsAt(t0), nil), wantErr: ErrDisallowedAlgorithm, wantMsg: `alg "none"; only EdDSA`},
		{name: "alg HS256 keyed with the public key", verifier: newOnly, token: rawJWS(t, with(hdr, "alg", "HS256"), assertionClaimsAt(t0), publicKeyAsHMAC), wantErr: ErrDisallowedAlgorithm, wantMsg: `alg "HS256"`},
		{name: "no typ", verifier: newOnly, token: handSigned(t, newKey, map[string]any{"alg": "EdDSA", "kid": hdr["kid"]}, assertionClaimsAt(t0)), wantErr: ErrMalformed, wantMsg: `typ "" is not "tether-assertion+jwt"`},
		{name: "ordinary JWT typ", verifier: newOnly, token: handSigned(t, newKey, with(hdr, "typ", "JWT"), assertionClaimsAt(t0)), wantErr: ErrMalformed, wantMsg: `typ "JWT"`},
		{name: "crit header", verifier: newOnly, token: handSigned(t, newKey, with(hdr, "crit", []string{"b64"}), assertionClaimsAt(t0)), wantErr: ErrMalformed, wantMsg: `header has member "crit"`},
		{name: "system: group, signed anyway", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "groups", []string{"system:masters"})), wantErr: ErrSystemIdentity, wantMsg: `group "system:masters"`},
		{name: "system: subject, signed anyway", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "sub", "system:admin")), wantErr: ErrSystemIdentity},
		{name: "lifetime too long, signed anyway", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "exp", t0.Add(time.Hour).Unix())), wantErr: ErrMalformed, wantMsg: "lifetime 3600s"},
		{name: "token mode with an identity", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "mode", "token")), wantErr: ErrMalformed, wantMsg: "carries an identity"},
		{name: "unknown mode", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "mode", "admin")), wantErr: ErrMalformed, wantMsg: `mode "admin"`},
		{name: "unknown claim", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "extra", 1)), wantErr: ErrMalformed, wantMsg: `unknown field "extra"`},
		{name: "another hub", verifier: newOnly, token: handSigned(t, newKey, hdr, with(assertionClaimsAt(t0), "iss", "hub-2")), wantErr: ErrUnknownIssuer, wantMsg: `from hub "hub-2"`},
		{name: "too large", verifier: newOnly, token: strings.Repeat("A", MaxAssertionSize+1), wantErr: ErrTokenTooLarge},
		{name: "garbage", verifier: newOnly, token: "Bearer xyz", wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cluster := orDefault(tc.cluster, testCluster)
			now := orDefault(tc.now, t0)
			got, err := tc.verifier.Verify(tc.token, cluster, now)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("assertion (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
			if !strings.Contains(errString(err), tc.wantMsg) {
				t.Errorf("error %q, want one containing %q", errString(err), tc.wantMsg)
			}
		})
	}
}

func TestAssertionSize(t *testing.T) {
	s := newSigner(t, seededKey(1))
	tok := mustSign(t, s, Assertion{Cluster: testCluster, Subject: testOID, Groups: uuids(9, 500), Mode: ModeImpersonate}, t0)
	// 500 groups of 36 characters are 19,500 bytes of JSON with quotes
	// and commas; base64url adds a third, header and signature little.
	if max := 27 << 10; len(tok) > max {
		t.Errorf("assertion with 500 groups is %d bytes, want at most %d", len(tok), max)
	}
}

func TestAssertionSignRefuses(t *testing.T) {
	s := newSigner(t, seededKey(1))
	base := Assertion{Cluster: testCluster, Subject: testOID, Mode: ModeImpersonate}
	mod := func(f func(*Assertion)) Assertion { a := base; f(&a); return a }
	tests := []struct {
		name    string
		a       Assertion
		wantErr error
	}{
		{name: "good", a: base},
		{name: "no cluster", a: mod(func(a *Assertion) { a.Cluster = "" }), wantErr: ErrMalformed},
		{name: "no subject", a: mod(func(a *Assertion) { a.Subject = "" }), wantErr: ErrMissingID},
		{name: "system: subject", a: mod(func(a *Assertion) { a.Subject = "system:kube-controller-manager" }), wantErr: ErrSystemIdentity},
		{name: "system: group", a: mod(func(a *Assertion) { a.Groups = []string{"ok", "system:masters"} }), wantErr: ErrSystemIdentity},
		{name: "too many groups", a: mod(func(a *Assertion) { a.Groups = uuids(1, MaxGroups+1) }), wantErr: ErrTooManyGroups},
		{name: "no mode", a: mod(func(a *Assertion) { a.Mode = "" }), wantErr: ErrMalformed},
		{name: "token mode with a subject", a: mod(func(a *Assertion) { a.Mode = ModeToken }), wantErr: ErrMalformed},
		{name: "lifetime 61s", a: mod(func(a *Assertion) { a.Expiry = t0.Add(61 * time.Second) }), wantErr: ErrMalformed},
		{name: "lifetime 60s", a: mod(func(a *Assertion) { a.Expiry = t0.Add(60 * time.Second) })},
		{name: "already expired", a: mod(func(a *Assertion) { a.Expiry = t0 }), wantErr: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Sign(tc.a, t0)
			if diff := cmp.Diff(tc.wantErr, reason(err), cmpopts.EquateErrors()); diff != "" {
				t.Errorf("error %v (-want +got):\n%s", err, diff)
			}
		})
	}
}

// TestAssertionIsStandardJWS: go-jose, an independent implementation,
// reads and verifies what the signer makes, and agrees on the key ID.
func TestAssertionIsStandardJWS(t *testing.T) {
	key := seededKey(4)
	s := newSigner(t, key)
	tok := mustSign(t, s, Assertion{Cluster: testCluster, Subject: testOID, Mode: ModeImpersonate, ID: "j"}, t0)
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	payload, err := jws.Verify(s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	thumb, err := (&jose.JSONWebKey{Key: s.PublicKey()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]any{
		"kid":     jws.Signatures[0].Header.KeyID,
		"typ":     jws.Signatures[0].Header.ExtraHeaders[jose.HeaderType],
		"payload": string(payload),
	}
	want := map[string]any{
		"kid":     b64(thumb),
		"typ":     AssertionType,
		"payload": `{"iss":"hub-1","aud":"/groups/prod/clusters/east","sub":"` + testOID + `","mode":"impersonate","iat":` + itoa(t0.Unix()) + `,"exp":` + itoa(t0.Unix()+30) + `,"jti":"j"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestAssertionKeyPEM(t *testing.T) {
	key, err := GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := MarshalPrivateKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	gotPriv, err := ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(key, gotPriv); diff != "" {
		t.Errorf("private key (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(key.Public().(ed25519.PublicKey), gotPub); diff != "" {
		t.Errorf("public key (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(string(privPEM), "-----BEGIN PRIVATE KEY-----") || !strings.HasPrefix(string(pubPEM), "-----BEGIN PUBLIC KEY-----") {
		t.Errorf("PEM blocks:\n%s%s", privPEM, pubPEM)
	}
	tests := []struct {
		name  string
		parse func() error
	}{
		{name: "public PEM as private", parse: func() error { _, err := ParsePrivateKeyPEM(pubPEM); return err }},
		{name: "private PEM as public", parse: func() error { _, err := ParsePublicKeyPEM(privPEM); return err }},
		{name: "RSA public key", parse: func() error { _, err := ParsePublicKeyPEM(rsaPublicPEM(t)); return err }},
		{name: "garbage", parse: func() error { _, err := ParsePrivateKeyPEM([]byte("garbage")); return err }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.parse(); err == nil {
				t.Error("parsed, want an error")
			}
		})
	}
}
