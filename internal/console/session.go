package console

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tether.dev/tether/internal/store"
)

// Sessions live in the store as ephemeral records, so that every hub
// replica sharing the store (PostgreSQL) serves every session, and
// signing out ends the session everywhere at once (a sealed cookie could
// not be revoked). The browser holds only a random 256-bit session ID in
// the cookie; the record is keyed by the ID's SHA-256 and its value (the
// access and refresh tokens) is sealed with AES-256-GCM under a key
// derived from the ID (HKDF-SHA256). The store thus never holds the ID,
// nor a usable token: a copy of the database opens no session.

// Cookie names. The __Host- prefix makes browsers refuse them unless
// Secure, Path=/ and without Domain: no sibling host can set or read them.
const (
	sessionCookie = "__Host-tether-console"
	signInCookie  = "__Host-tether-signin"
)

// Kinds of the console's ephemeral records.
const (
	kindSession = "console-session"
	kindSignIn  = "console-signin"
)

const (
	// touchEvery is how stale a session's last-use time may get before a
	// request writes it again (not every request writes the store).
	touchEvery = time.Minute
	// refreshBefore is how long before its expiry an access token is
	// refreshed.
	refreshBefore = 30 * time.Second
)

// session is a signed-in browser's record.
type session struct {
	// Issuer is the URL of the issuer signed in at.
	Issuer       string    `json:"issuer"`
	AccessToken  string    `json:"accessToken"`
	RefreshToken string    `json:"refreshToken,omitempty"`
	Expiry       time.Time `json:"expiry"` // the access token's
	// Name is the principal's display name; PrincipalID its object ID.
	Name        string `json:"name"`
	PrincipalID string `json:"principalID,omitempty"`
	// CSRF is the synchronizer token every form of the session carries.
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	LastSeen time.Time `json:"lastSeen"`

	id      string // from the cookie; never stored
	version int64  // the record's, for compare and swap
}

// newSecret is 32 random bytes, base64url.
func newSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// recordKey is the store key of a record named by a secret.
func recordKey(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// aead is the cipher for a record named by secret.
func aead(secret, kind string) (cipher.AEAD, error) {
	key, err := hkdf.Key(sha256.New, []byte(secret), nil, "tether console "+kind, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts v's JSON for the record of kind named by secret.
func seal(secret, kind string, v any) ([]byte, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	a, err := aead(secret, kind)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize())
	rand.Read(nonce)
	return a.Seal(nonce, nonce, plain, []byte(kind)), nil
}

// unseal decrypts a value sealed by seal into v.
func unseal(secret, kind string, sealed []byte, v any) error {
	a, err := aead(secret, kind)
	if err != nil {
		return err
	}
	if len(sealed) < a.NonceSize() {
		return errors.New("sealed record too short")
	}
	plain, err := a.Open(nil, sealed[:a.NonceSize()], sealed[a.NonceSize():], []byte(kind))
	if err != nil {
		return errors.New("sealed record does not open with this key")
	}
	return json.Unmarshal(plain, v)
}

// expiry is when the session ends unless used again.
func (s *server) expiry(sess *session) time.Time {
	idle := sess.LastSeen.Add(s.cfg.IdleTimeout)
	abs := sess.Created.Add(s.cfg.SessionTTL)
	if idle.Before(abs) {
		return idle
	}
	return abs
}

// createSession stores a new session and sets its cookie.
func (s *server) createSession(ctx context.Context, w http.ResponseWriter, sess *session) error {
	now := s.cfg.Now()
	sess.id, sess.CSRF, sess.Created, sess.LastSeen = newSecret(), newSecret(), now, now
	v, err := seal(sess.id, kindSession, sess)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.PutEphemeral(ctx, store.Ephemeral{Kind: kindSession, Key: recordKey(sess.id), Value: v, ExpiresAt: s.expiry(sess)}, now); err != nil {
		return fmt.Errorf("store the session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sess.id, Path: "/", MaxAge: int(s.cfg.SessionTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return nil
}

// saveSession writes sess back if no other request changed it since it
// was read; it returns store.ErrConflict if one did.
func (s *server) saveSession(ctx context.Context, sess *session) error {
	v, err := seal(sess.id, kindSession, sess)
	if err != nil {
		return err
	}
	e, err := s.cfg.Store.UpdateEphemeral(ctx, store.Ephemeral{Kind: kindSession, Key: recordKey(sess.id), Value: v, Version: sess.version, ExpiresAt: s.expiry(sess)}, s.cfg.Now())
	if err != nil {
		return err
	}
	sess.version = e.Version
	return nil
}

// loadSession reads the session named by id: nil if there is none (or
// it ended).
func (s *server) loadSession(ctx context.Context, id string) (*session, error) {
	now := s.cfg.Now()
	e, err := s.cfg.Store.GetEphemeral(ctx, kindSession, recordKey(id), now)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sess := &session{}
	if err := unseal(id, kindSession, e.Value, sess); err != nil {
		s.logger.Warn("console session record unreadable; treated as signed out", "err", err)
		return nil, nil
	}
	sess.id, sess.version = id, e.Version
	if !now.Before(s.expiry(sess)) {
		return nil, nil
	}
	return sess, nil
}

// session returns the browser's session, nil if it has none. When it
// returns false it has answered (the store failed).
func (s *server) session(w http.ResponseWriter, r *http.Request) (*session, bool) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || len(ck.Value) != 43 {
		return nil, true
	}
	sess, err := s.loadSession(r.Context(), ck.Value)
	if err != nil {
		s.storeFailed(w, r, "read your session", err)
		return nil, false
	}
	if sess == nil {
		clearCookie(w, sessionCookie)
		return nil, true
	}
	// The clusters table's own refresh (partial=1) is not a person's use:
	// an open tab does not keep an idle session alive.
	if now := s.cfg.Now(); now.Sub(sess.LastSeen) >= touchEvery && r.URL.Query().Get("partial") == "" {
		sess.LastSeen = now
		if err := s.saveSession(r.Context(), sess); err != nil && !errors.Is(err, store.ErrConflict) {
			s.logger.Warn("console session not touched", "err", err)
		}
	}
	return sess, true
}

// endSession deletes the session's record and its cookie.
func (s *server) endSession(ctx context.Context, w http.ResponseWriter, sess *session) {
	if err := s.cfg.Store.DeleteEphemeral(ctx, kindSession, recordKey(sess.id)); err != nil {
		s.logger.Warn("console session not deleted; it ends at its expiry", "err", err)
	}
	clearCookie(w, sessionCookie)
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
}

// errSignInAgain: the session's tokens can no longer be used.
var errSignInAgain = errors.New("your sign-in has expired")

// accessToken returns the session's access token, refreshed first when it
// expires soon. An error wrapping errSignInAgain means the session is
// over.
func (s *server) accessToken(ctx context.Context, r *http.Request, sess *session) (string, error) {
	now := s.cfg.Now()
	if now.Add(refreshBefore).Before(sess.Expiry) {
		return sess.AccessToken, nil
	}
	if sess.RefreshToken == "" {
		return "", errSignInAgain
	}
	p, err := s.providerFor(ctx, r, sess.Issuer)
	if err != nil {
		return "", err
	}
	tok, err := p.refresh(ctx, r, sess.RefreshToken)
	if err != nil {
		// Another request may have refreshed it first (and the issuer
		// may not accept a refresh token twice).
		if again, lerr := s.loadSession(ctx, sess.id); lerr == nil && again != nil && now.Add(refreshBefore).Before(again.Expiry) {
			*sess = *again
			return sess.AccessToken, nil
		}
		return "", fmt.Errorf("%w: %v", errSignInAgain, err)
	}
	sess.AccessToken, sess.Expiry = tok.AccessToken, tok.Expiry
	if tok.RefreshToken != "" {
		sess.RefreshToken = tok.RefreshToken
	}
	if err := s.saveSession(ctx, sess); err != nil && !errors.Is(err, store.ErrConflict) {
		s.logger.Warn("console session: refreshed tokens not saved", "err", err)
	}
	return sess.AccessToken, nil
}

// checkPost refuses a state-changing request that may not come from the
// console's own page: another origin (Origin, Sec-Fetch-Site) or no, or a
// wrong, CSRF token.
func (s *server) checkPost(r *http.Request, sess *session) error {
	if o := r.Header.Get("Origin"); o != "" && o != s.origin {
		return fmt.Errorf("the form was sent from %q, not from the console at %s", o, s.origin)
	}
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" {
		return fmt.Errorf("the form was sent from another site (%s)", site)
	}
	token := r.PostFormValue("csrf")
	if token == "" || sess == nil || subtle.ConstantTimeCompare([]byte(token), []byte(sess.CSRF)) != 1 {
		return errors.New("the form's security token is missing or stale")
	}
	return nil
}
