package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
)

// keyMaxAge is how long a fetched key set is used before it is fetched
// again on the next verification (so a key the issuer withdrew stops being
// trusted), independent of unknown key IDs.
const keyMaxAge = time.Hour

// maxIssuerResponse bounds a discovery document or key set.
const maxIssuerResponse = 1 << 20

// remoteKeys is one issuer's discovery document and JSON Web Key Set,
// fetched lazily by the verifications that need them, never by a
// background goroutine.
//
// go-oidc's RemoteKeySet refetches the key set whenever no cached key
// verifies a token: for an unknown kid, but also for a known kid with a bad
// signature and for every token once the issuer is down. A flood of forged
// tokens would make the hub hammer the issuer. remoteKeys instead fetches
// discovery and keys at most once per interval each, whatever the number
// of tokens and callers; a token naming a key the set still lacks inside
// that window is refused.
type remoteKeys struct {
	issuer   string
	client   *http.Client
	timeout  time.Duration
	interval time.Duration
	now      func() time.Time
	logger   *slog.Logger

	// fetching is a one-slot semaphore held by the caller fetching
	// discovery or keys; others wait for it under their own context.
	fetching chan struct{}

	// static is set for an issuer whose keys are configured
	// (IssuerConfig.Keys): keys is then fixed and nothing is fetched.
	static bool

	mu           sync.Mutex // guards the fields below
	jwksURL      string     // from discovery; "" until discovery succeeded
	discoveryAt  time.Time  // last discovery attempt
	discoveryErr error      // error of the last discovery attempt
	keys         []jose.JSONWebKey
	keysAt       time.Time // last key-set fetch attempt
	keysOK       time.Time // last successful key-set fetch
	keysErr      error     // error of the last attempt, nil after a success
}

func newRemoteKeys(issuer string, client *http.Client, timeout, interval time.Duration, now func() time.Time, logger *slog.Logger) *remoteKeys {
	return &remoteKeys{
		issuer:   issuer,
		client:   client,
		timeout:  timeout,
		interval: interval,
		now:      now,
		logger:   logger,
		fetching: make(chan struct{}, 1),
	}
}

// verify checks the signature of a compact JWS already parsed by go-oidc
// with the issuer's allowed algorithms, and returns its payload.
func (r *remoteKeys) verify(ctx context.Context, token string, algs []jose.SignatureAlgorithm) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil {
		return nil, refuse(ErrMalformed, "%v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, refuse(ErrMalformed, "want exactly one signature")
	}
	kid, alg := jws.Signatures[0].Header.KeyID, jws.Signatures[0].Header.Algorithm
	keys, keysErr, err := r.load(ctx, false)
	if err != nil {
		return nil, err
	}
	candidates := matchKeys(keys, kid, alg)
	if len(candidates) == 0 {
		if keys, keysErr, err = r.load(ctx, true); err != nil {
			return nil, err
		}
		candidates = matchKeys(keys, kid, alg)
	}
	if len(candidates) == 0 {
		if keysErr != nil {
			return nil, fmt.Errorf("%w: %s: key set: %w", ErrIssuerUnavailable, r.issuer, keysErr)
		}
		return nil, refuse(ErrBadSignature, "signing key %s (%s) is not among the issuer's published keys", quoteBounded(kid), alg)
	}
	for _, k := range candidates {
		if payload, err := jws.Verify(k); err == nil {
			return payload, nil
		}
	}
	return nil, refuse(ErrBadSignature, "signature does not verify with the issuer's key %s", quoteBounded(kid))
}

// load returns the issuer's keys, first fetching discovery and the key set
// when none are known yet, when they are older than keyMaxAge, or when
// unknownKey says a token names a key the set lacks; each fetch at most
// once per interval. keysErr is the error of the last key-set fetch; err
// is set only when there is no usable key set at all.
func (r *remoteKeys) load(ctx context.Context, unknownKey bool) (keys []jose.JSONWebKey, keysErr, err error) {
	if r.static {
		return r.keys, nil, nil
	}
	r.mu.Lock()
	discover, fetch := r.wantLocked(r.now(), unknownKey)
	lacking := r.jwksURL == "" || len(r.keys) == 0 || unknownKey
	r.mu.Unlock()
	// A caller lacking what it needs waits for a fetch in flight (and
	// does one if it is due), then takes whatever it brought.
	if discover || fetch || lacking {
		select {
		case r.fetching <- struct{}{}:
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("wait for issuer %s: %w", r.issuer, ctx.Err())
		}
		r.fetchHeld(ctx, unknownKey)
		<-r.fetching
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.jwksURL == "":
		return nil, nil, fmt.Errorf("%w: %s: discovery: %w (retried at most every %s)", ErrIssuerUnavailable, r.issuer, orUnknown(r.discoveryErr), r.interval)
	case len(r.keys) == 0:
		return nil, nil, fmt.Errorf("%w: %s: key set: %w (retried at most every %s)", ErrIssuerUnavailable, r.issuer, orUnknown(r.keysErr), r.interval)
	}
	return r.keys, r.keysErr, nil
}

// wantLocked says whether discovery or a key-set fetch is due now.
func (r *remoteKeys) wantLocked(now time.Time, unknownKey bool) (discover, fetch bool) {
	if r.jwksURL == "" {
		due := r.discoveryAt.IsZero() || now.Sub(r.discoveryAt) >= r.interval
		return due, due
	}
	allowed := r.keysAt.IsZero() || now.Sub(r.keysAt) >= r.interval
	stale := len(r.keys) == 0 || unknownKey || now.Sub(r.keysOK) >= keyMaxAge
	return false, allowed && stale
}

// fetchHeld runs discovery and the key-set fetch that are still due; the
// caller holds r.fetching. The fetches are detached from the caller's
// cancellation (a client hanging up must not fail the fetch others wait
// for) but bounded by r.timeout.
func (r *remoteKeys) fetchHeld(ctx context.Context, unknownKey bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout)
	defer cancel()

	r.mu.Lock()
	now := r.now()
	discover, fetch := r.wantLocked(now, unknownKey)
	if discover {
		r.discoveryAt = now
	}
	jwksURL := r.jwksURL
	r.mu.Unlock()

	if discover {
		u, err := r.discover(ctx)
		r.mu.Lock()
		r.discoveryErr = err
		r.jwksURL = u
		jwksURL = u
		r.mu.Unlock()
		if err != nil {
			r.logger.Warn("issuer discovery failed", "issuer", r.issuer, "err", err)
			return
		}
	}
	if !fetch {
		return
	}
	r.mu.Lock()
	r.keysAt = r.now()
	r.mu.Unlock()
	keys, err := r.fetchKeys(ctx, jwksURL)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keysErr = err
	if err != nil {
		r.logger.Warn("issuer key set fetch failed", "issuer", r.issuer, "err", err)
		return
	}
	r.keys, r.keysOK = keys, r.keysAt
	r.logger.Info("issuer key set fetched", "issuer", r.issuer, "keys", len(keys))
}

// discover reads the discovery document through go-oidc, which also checks
// that it names the configured issuer exactly.
func (r *remoteKeys) discover(ctx context.Context) (string, error) {
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, r.client), r.issuer)
	if err != nil {
		return "", err
	}
	var meta struct {
		JWKSURL string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		return "", fmt.Errorf("read discovery document: %w", err)
	}
	if _, err := checkHTTPS(meta.JWKSURL); err != nil {
		return "", fmt.Errorf("jwks_uri: %w", err)
	}
	return meta.JWKSURL, nil
}

// fetchKeys GETs the key set and keeps the keys that can verify a
// signature: public RSA, ECDSA or Ed25519 keys not marked for encryption.
// Symmetric ("oct") and private keys are dropped, never used.
func (r *remoteKeys) fetchKeys(ctx context.Context, jwksURL string) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read key set: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("key set: HTTP %s", resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decode key set: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if json.Unmarshal(raw, &k) != nil || k.Use == "enc" || !signingKey(k.Key) {
			continue // RFC 7517 section 5: ignore keys not understood
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("key set holds no usable public signing key")
	}
	return keys, nil
}

func orUnknown(err error) error {
	if err == nil {
		return errors.New("no attempt finished")
	}
	return err
}

func signingKey(k any) bool {
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// matchKeys returns the keys that may have made a signature: same kid
// (any key when the token names none), an alg that agrees with the key's
// own alg if it declares one, and a key type that fits the alg.
func matchKeys(keys []jose.JSONWebKey, kid, alg string) []*jose.JSONWebKey {
	var out []*jose.JSONWebKey
	for i := range keys {
		k := &keys[i]
		if (kid != "" && k.KeyID != kid) || (k.Algorithm != "" && k.Algorithm != alg) || !keyFitsAlg(k.Key, alg) {
			continue
		}
		out = append(out, k)
	}
	return out
}

func keyFitsAlg(k any, alg string) bool {
	switch k.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		return strings.HasPrefix(alg, "ES")
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// callKeySet adapts remoteKeys to go-oidc's KeySet for one verification and
// keeps the typed error, which go-oidc would flatten into a string.
type callKeySet struct {
	keys *remoteKeys
	algs []jose.SignatureAlgorithm
	err  error
}

func (c *callKeySet) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	payload, err := c.keys.verify(ctx, token, c.algs)
	c.err = err
	return payload, err
}
