// Package agentkey is how an enrolled agent proves, on every tunnel
// connection, that it holds the private key it registered at enrollment.
//
// The agent sends, in the upgrade request's Authorization header,
//
//	Tether-Agent <base64url(claims JSON)>.<base64url(Ed25519 signature of the first part)>
//
// where the claims name the cluster, the hub it is meant for, the time and a
// random nonce. The hub verifies the signature with the public key it stored
// at enrollment, accepts the proof only within MaxSkew of its own clock, and
// refuses a nonce it has already seen (Replay). One round trip, no shared
// secret, nothing the hub stores can be replayed as the agent's credential.
// Both sides import this package; it needs nothing beyond the standard
// library.
package agentkey

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Scheme is the Authorization scheme of an agent proof.
const Scheme = "Tether-Agent"

// MaxSkew is how far the agent's clock may be from the hub's.
const MaxSkew = 5 * time.Minute

// maxProofLen bounds what the hub parses before verifying anything.
const maxProofLen = 2048

// Claims are what the agent signs.
type Claims struct {
	// Cluster is the cluster ID the agent enrolled as, /groups/G/clusters/N.
	Cluster string `json:"cluster"`
	// Audience is the hub's host name as the agent dialled it, so a proof
	// made for one hub is useless at another that shares the key.
	Audience string `json:"aud"`
	// IssuedAt is the agent's clock, in Unix seconds.
	IssuedAt int64 `json:"iat"`
	// Nonce is 16 random bytes, base64url, unique per proof.
	Nonce string `json:"nonce"`
}

// Generate makes a new agent key pair.
func Generate() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// Sign returns the Authorization header value proving possession of key.
func Sign(key ed25519.PrivateKey, cluster, audience string, now time.Time) (string, error) {
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	payload, err := json.Marshal(Claims{Cluster: cluster, Audience: audience, IssuedAt: now.Unix(), Nonce: base64.RawURLEncoding.EncodeToString(nonce)})
	if err != nil {
		return "", err
	}
	first := base64.RawURLEncoding.EncodeToString(payload)
	sig := ed25519.Sign(key, []byte(first))
	return Scheme + " " + first + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// Parse reads the claims of a proof without verifying it, so the hub can
// find the cluster whose key verifies it. Never act on the claims before
// Verify succeeds.
func Parse(header string) (Claims, error) {
	_, payload, _, err := split(header)
	if err != nil {
		return Claims{}, err
	}
	return decodeClaims(payload)
}

// Verify checks a proof against the cluster's public key, the expected
// audience and the hub's clock, and records its nonce in seen (which may be
// nil only in tests that check one proof).
func Verify(header string, pub ed25519.PublicKey, audience string, now time.Time, seen *Replay) (Claims, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Claims{}, errors.New("agent key on record is not an Ed25519 public key")
	}
	first, payload, sig, err := split(header)
	if err != nil {
		return Claims{}, err
	}
	if !ed25519.Verify(pub, []byte(first), sig) {
		return Claims{}, errors.New("agent proof signature does not verify with the key registered at enrollment")
	}
	c, err := decodeClaims(payload)
	if err != nil {
		return Claims{}, err
	}
	if c.Audience != audience {
		return Claims{}, fmt.Errorf("agent proof is for hub %q, not %q", c.Audience, audience)
	}
	issued := time.Unix(c.IssuedAt, 0)
	if d := now.Sub(issued); d > MaxSkew || d < -MaxSkew {
		return Claims{}, fmt.Errorf("agent proof time %s is more than %s from the hub's clock %s; synchronise the clocks",
			issued.UTC().Format(time.RFC3339), MaxSkew, now.UTC().Format(time.RFC3339))
	}
	if seen != nil && !seen.add(c.Cluster+"\x00"+c.Nonce, now) {
		return Claims{}, errors.New("agent proof was already used (replayed)")
	}
	return c, nil
}

func split(header string) (first string, payload, sig []byte, err error) {
	if len(header) > maxProofLen {
		return "", nil, nil, errors.New("agent proof is too long")
	}
	rest, ok := strings.CutPrefix(header, Scheme+" ")
	if !ok {
		return "", nil, nil, fmt.Errorf("authorization is not a %s proof", Scheme)
	}
	first, sigPart, ok := strings.Cut(rest, ".")
	if !ok {
		return "", nil, nil, errors.New("agent proof is malformed: want CLAIMS.SIGNATURE")
	}
	if payload, err = base64.RawURLEncoding.DecodeString(first); err != nil {
		return "", nil, nil, errors.New("agent proof claims are not base64url")
	}
	if sig, err = base64.RawURLEncoding.DecodeString(sigPart); err != nil || len(sig) != ed25519.SignatureSize {
		return "", nil, nil, errors.New("agent proof signature is malformed")
	}
	return first, payload, sig, nil
}

func decodeClaims(payload []byte) (Claims, error) {
	var c Claims
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Claims{}, fmt.Errorf("agent proof claims are malformed: %w", err)
	}
	if c.Cluster == "" || c.Audience == "" || c.Nonce == "" || c.IssuedAt == 0 {
		return Claims{}, errors.New("agent proof claims are incomplete")
	}
	return c, nil
}

// Replay remembers nonces for twice MaxSkew, the span in which a proof could
// otherwise be accepted again. The zero value is ready to use.
type Replay struct {
	mu   sync.Mutex           // guards seen
	seen map[string]time.Time // nonce key -> when it may be forgotten
}

func (r *Replay) add(key string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string]time.Time{}
	}
	for k, until := range r.seen { // bounded: proofs arrive at connection rate
		if now.After(until) {
			delete(r.seen, k)
		}
	}
	if _, dup := r.seen[key]; dup {
		return false
	}
	r.seen[key] = now.Add(2 * MaxSkew)
	return true
}

// MarshalPrivateKey encodes key as PEM (PKCS #8 layout is not needed for
// Ed25519; the seed is stored) for the agent's state.
func MarshalPrivateKey(key ed25519.PrivateKey) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "TETHER AGENT KEY", Bytes: key.Seed()})
}

// UnmarshalPrivateKey reverses MarshalPrivateKey.
func UnmarshalPrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "TETHER AGENT KEY" || len(block.Bytes) != ed25519.SeedSize {
		return nil, errors.New("not a tether agent key (PEM block TETHER AGENT KEY with a 32-byte seed)")
	}
	return ed25519.NewKeyFromSeed(block.Bytes), nil
}
