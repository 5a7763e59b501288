package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// AssertionHeader carries the hub's assertion of who the caller is, on
// each request the hub forwards to an agent.
//
// The agent must delete any copy a client supplied before it verifies
// anything (and, like Authorization and Impersonate-*, never pass it to
// the API server). Requests reach the agent only over the tunnel, which
// only the hub can open, but the agent never trusts a plain header: it
// acts only on an assertion that AssertionVerifier.Verify accepts.
const AssertionHeader = "Tether-Assertion"

// AssertionType is the JWS typ header of an assertion, so that no other
// JWT signed with the hub's key can pass for one.
const AssertionType = "tether-assertion+jwt"

const (
	// DefaultAssertionLifetime is an assertion's lifetime when the signer
	// is not told otherwise.
	DefaultAssertionLifetime = 30 * time.Second
	// MaxAssertionLifetime bounds exp - iat.
	MaxAssertionLifetime = 60 * time.Second
	// AssertionLeeway is the clock skew the agent tolerates on exp and iat.
	//
	// Hub and cluster clocks are not synchronised with each other. An
	// assertion is used within AssertionReuse of being made, so it needs
	// to live only that long plus the skew between the two clocks and
	// transit: the lifetime (30 s, at most 60 s) and this leeway
	// absorb up to about half a minute of skew in either direction. A
	// cluster whose clock is further off refuses every request, with an
	// error that says so, rather than accepting assertions for longer.
	AssertionLeeway = 5 * time.Second
	// MaxAssertionSize bounds a signed assertion. MaxGroups UUID groups
	// fit; the agent's http.Server needs MaxHeaderBytes above this.
	MaxAssertionSize = 1 << 20
)

// Mode says how the agent forwards a request.
type Mode string

const (
	// ModeImpersonate: the agent impersonates Subject and Groups with its
	// own credentials.
	ModeImpersonate Mode = "impersonate"
	// ModeToken: the caller's service-account token is passed through to
	// the API server untouched; the assertion carries no identity.
	ModeToken Mode = "token"
)

// Assertion is what the hub tells the agent about one forwarded request.
type Assertion struct {
	// Issuer is the hub's ID (iss).
	Issuer string
	// Cluster is the ID of the cluster the request is for (aud).
	Cluster string
	// Subject is the principal's object ID (sub); empty in ModeToken.
	Subject string
	// Groups are the groups to impersonate; empty in ModeToken.
	Groups []string
	Mode   Mode
	// IssuedAt and Expiry are iat and exp, whole seconds.
	IssuedAt time.Time
	Expiry   time.Time
	// ID is a unique ID (jti), for audit correlation.
	ID string
}

// assertionClaims is the JSON payload. Short, standard names keep it
// compact; groups are a plain array of strings (500 UUIDs: about 20 KB).
type assertionClaims struct {
	Issuer   string   `json:"iss"`
	Audience string   `json:"aud"`
	Subject  string   `json:"sub,omitempty"`
	Groups   []string `json:"groups,omitempty"`
	Mode     Mode     `json:"mode"`
	IssuedAt int64    `json:"iat"`
	Expiry   int64    `json:"exp"`
	ID       string   `json:"jti"`
}

type assertionHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// AssertionSigner signs assertions with the hub's Ed25519 key.
type AssertionSigner struct {
	hubID  string
	key    ed25519.PrivateKey
	header string // encoded protected header, the same for every assertion
	reuse  assertionReuse
}

// NewAssertionSigner returns a signer for the hub hubID.
func NewAssertionSigner(hubID string, key ed25519.PrivateKey) (*AssertionSigner, error) {
	if hubID == "" {
		return nil, errors.New("identity: assertion signer needs the hub ID")
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, errors.New("identity: assertion signer needs an Ed25519 private key")
	}
	pub := key.Public().(ed25519.PublicKey)
	h, err := json.Marshal(assertionHeader{Alg: "EdDSA", Kid: KeyID(pub), Typ: AssertionType})
	if err != nil {
		return nil, err
	}
	return &AssertionSigner{hubID: hubID, key: key, header: base64.RawURLEncoding.EncodeToString(h)}, nil
}

// PublicKey is what agents learn at enrollment.
func (s *AssertionSigner) PublicKey() ed25519.PublicKey {
	return s.key.Public().(ed25519.PublicKey)
}

// Sign returns the compact JWS of a. It sets Issuer to the hub's ID,
// IssuedAt to now and, when a.ID is empty, a random ID. A zero Expiry
// means now + DefaultAssertionLifetime; otherwise it must be after now and
// at most MaxAssertionLifetime later.
func (s *AssertionSigner) Sign(a Assertion, now time.Time) (string, error) {
	now = now.Truncate(time.Second)
	a.Issuer, a.IssuedAt = s.hubID, now
	if a.Expiry.IsZero() {
		a.Expiry = now.Add(DefaultAssertionLifetime)
	}
	if a.ID == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		a.ID = base64.RawURLEncoding.EncodeToString(b)
	}
	c := assertionClaims{Issuer: a.Issuer, Audience: a.Cluster, Subject: a.Subject, Groups: a.Groups, Mode: a.Mode, IssuedAt: a.IssuedAt.Unix(), Expiry: a.Expiry.Unix(), ID: a.ID}
	if err := c.check(); err != nil {
		return "", fmt.Errorf("identity: sign assertion: %w", err)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	input := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	token := input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(s.key, []byte(input)))
	if len(token) > MaxAssertionSize {
		return "", fmt.Errorf("identity: sign assertion: %d bytes, at most %d (%d groups)", len(token), MaxAssertionSize, len(a.Groups))
	}
	return token, nil
}

// check holds what both sides require of the claims, time aside.
func (c *assertionClaims) check() error {
	switch {
	case c.Issuer == "" || c.Audience == "" || c.ID == "":
		return refuse(ErrMalformed, "assertion lacks iss, aud or jti")
	case c.Expiry <= c.IssuedAt || time.Duration(c.Expiry-c.IssuedAt)*time.Second > MaxAssertionLifetime:
		return refuse(ErrMalformed, "assertion lifetime %ds is not within (0, %s]", c.Expiry-c.IssuedAt, MaxAssertionLifetime)
	}
	switch c.Mode {
	case ModeImpersonate:
		if c.Subject == "" {
			return refuse(ErrMissingID, "impersonation assertion without a subject")
		}
		if len(c.Subject) > maxNameLen {
			return refuse(ErrMalformed, "subject longer than %d bytes", maxNameLen)
		}
		if isSystem(c.Subject) {
			return refuse(ErrSystemIdentity, "subject %s", quoteBounded(c.Subject))
		}
		if _, err := checkGroups(c.Groups); err != nil {
			return err
		}
	case ModeToken:
		if c.Subject != "" || len(c.Groups) > 0 {
			return refuse(ErrMalformed, "token pass-through assertion carries an identity")
		}
	default:
		return refuse(ErrMalformed, "assertion mode %s is neither %q nor %q", quoteBounded(string(c.Mode)), ModeImpersonate, ModeToken)
	}
	return nil
}

// AssertionVerifier checks assertions on the agent with the hub's public
// keys learned at enrollment.
type AssertionVerifier struct {
	hubID    string
	keys     map[string]ed25519.PublicKey // by KeyID
	verified verifiedAssertions
}

// NewAssertionVerifier returns a verifier accepting assertions from the hub
// hubID signed by any of keys: one normally, the old and the new key during
// a rotation.
func NewAssertionVerifier(hubID string, keys ...ed25519.PublicKey) (*AssertionVerifier, error) {
	if hubID == "" {
		return nil, errors.New("identity: assertion verifier needs the hub ID")
	}
	if len(keys) == 0 {
		return nil, errors.New("identity: assertion verifier needs at least one hub key")
	}
	v := &AssertionVerifier{hubID: hubID, keys: map[string]ed25519.PublicKey{}}
	for _, k := range keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("identity: hub key is not an Ed25519 public key")
		}
		v.keys[KeyID(k)] = k
	}
	return v, nil
}

// Verify checks an assertion for this cluster at the agent's time now:
// size, alg pinned to EdDSA, typ, key, signature, issuer, audience, iat
// and exp within AssertionLeeway, lifetime, mode, and no system: subject
// or group. Every refusal is a *TokenError.
//
// An assertion it accepted before is recognised by its hash and not
// verified again; its audience and time window are checked anew.
func (v *AssertionVerifier) Verify(token, clusterID string, now time.Time) (Assertion, error) {
	if len(token) > MaxAssertionSize {
		return Assertion{}, refuse(ErrTokenTooLarge, "assertion of %d bytes, at most %d", len(token), MaxAssertionSize)
	}
	key := sha256.Sum256([]byte(token))
	if a, ok := v.verified.get(key); ok && a.Cluster == clusterID {
		if err := checkAssertionTime(a.IssuedAt, a.Expiry, now); err != nil {
			return Assertion{}, err
		}
		return a, nil
	}
	a, err := v.verify(token, clusterID, now)
	if err == nil {
		v.verified.put(key, a, now)
	}
	return a, err
}

func (v *AssertionVerifier) verify(token, clusterID string, now time.Time) (Assertion, error) {
	jws, err := splitCompact(token)
	if err != nil {
		return Assertion{}, err
	}
	h, err := decodeAssertionHeader(jws.header)
	if err != nil {
		return Assertion{}, err
	}
	if h.Alg != "EdDSA" {
		return Assertion{}, refuse(ErrDisallowedAlgorithm, "assertion %s; only EdDSA is accepted", describeAlg(h.Alg))
	}
	if h.Typ != AssertionType {
		return Assertion{}, refuse(ErrMalformed, "typ %s is not %q", quoteBounded(h.Typ), AssertionType)
	}
	key, ok := v.keys[h.Kid]
	if !ok {
		return Assertion{}, refuse(ErrBadSignature, "assertion signed with key %s, not a hub key this agent enrolled with", quoteBounded(h.Kid))
	}
	if !ed25519.Verify(key, []byte(jws.signingInput), jws.signature) {
		return Assertion{}, refuse(ErrBadSignature, "assertion signature does not verify")
	}
	var c assertionClaims
	if err := decodeStrict(jws.payload, &c); err != nil {
		return Assertion{}, refuse(ErrMalformed, "assertion claims: %v", err)
	}
	if c.Issuer != v.hubID {
		return Assertion{}, refuse(ErrUnknownIssuer, "assertion from hub %s, expected %s", quoteBounded(c.Issuer), quoteBounded(v.hubID))
	}
	if c.Audience != clusterID {
		return Assertion{}, refuse(ErrWrongAudience, "assertion is for cluster %s, not %s", quoteBounded(c.Audience), quoteBounded(clusterID))
	}
	if err := c.check(); err != nil {
		return Assertion{}, err
	}
	iat, exp := time.Unix(c.IssuedAt, 0), time.Unix(c.Expiry, 0)
	if err := checkAssertionTime(iat, exp, now); err != nil {
		return Assertion{}, err
	}
	return Assertion{Issuer: c.Issuer, Cluster: c.Audience, Subject: c.Subject, Groups: c.Groups, Mode: c.Mode, IssuedAt: iat, Expiry: exp, ID: c.ID}, nil
}

// checkAssertionTime checks iat and exp against now, with AssertionLeeway.
func checkAssertionTime(iat, exp, now time.Time) error {
	if late := now.Sub(exp); late > AssertionLeeway {
		return refuse(ErrExpired, "assertion expired %s ago by this cluster's clock (leeway %s); check the clocks of hub and cluster", ago(late), AssertionLeeway)
	}
	if early := iat.Sub(now); early > AssertionLeeway {
		return refuse(ErrNotYetValid, "assertion issued %s in the future by this cluster's clock (leeway %s); check the clocks of hub and cluster", ago(early), AssertionLeeway)
	}
	return nil
}

// decodeAssertionHeader reads alg, kid and typ, with exact member names,
// and refuses any other member (crit, jku, jwk, b64, ...).
func decodeAssertionHeader(m map[string]json.RawMessage) (assertionHeader, error) {
	var h assertionHeader
	for name := range m {
		if name != "alg" && name != "kid" && name != "typ" {
			return h, refuse(ErrMalformed, "assertion header has member %s", quoteBounded(name))
		}
	}
	var err error
	if h.Alg, err = headerString(m, "alg"); err != nil {
		return h, err
	}
	if h.Kid, err = headerString(m, "kid"); err != nil {
		return h, err
	}
	h.Typ, err = headerString(m, "typ")
	return h, err
}

// decodeStrict decodes one JSON object with no unknown member.
func decodeStrict(b []byte, into any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after JSON object")
	}
	return nil
}
