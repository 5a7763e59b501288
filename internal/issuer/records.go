package issuer

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"tether.dev/tether/internal/store"
)

// The issuer's short-lived state is kept in the store as ephemeral
// records, so that every hub replica sharing the store sees it: a sign-in
// may start on one replica, be approved on a second and be redeemed on a
// third. A record's key is the recordKey of what names it, never a code
// itself; its value is the JSON of a small struct.

// Kinds of the issuer's ephemeral records.
const (
	// kindDeviceCode: a pending device authorization (deviceGrant), by
	// recordKey of the device code.
	kindDeviceCode = "device-code"
	// kindUserCode: the device code a user code stands for
	// (userCodeRecord), by recordKey of the normalized user code.
	kindUserCode = "user-code"
	// kindAuthCode: an unredeemed authorization code (authCode), by
	// recordKey of the code.
	kindAuthCode = "auth-code"
	// kindLockoutLogin and kindLockoutAddr: failed attempts (failures), by
	// recordKey of the folded login name or of the client address.
	kindLockoutLogin = "lockout-login"
	kindLockoutAddr  = "lockout-addr"
)

const (
	// casAttempts bounds the reads and compare-and-swap writes of one
	// change to a record that other requests (on any replica) change too.
	casAttempts = 8
	// purgeEvery is how often an issuer deletes the expired records.
	purgeEvery = time.Minute
	// retryUnavailable is the Retry-After of an answer to try again when
	// the store could not be reached.
	retryUnavailable = 5 * time.Second
)

// errBusy: a record kept changing under a request for casAttempts reads
// (concurrent requests about one sign-in).
var errBusy = errors.New("the sign-in state kept changing under concurrent requests")

// recordKey is the key of a record named by s: base64url of SHA-256 of s.
// Codes and typed login names are never stored themselves.
func recordKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// getRecord returns the record of kind and key unexpired at now, with its
// value decoded; or store.ErrNotFound.
func getRecord[V any](ctx context.Context, st store.Store, kind, key string, now time.Time) (V, store.Ephemeral, error) {
	e, err := st.GetEphemeral(ctx, kind, key, now)
	if err != nil {
		var zero V
		return zero, store.Ephemeral{}, err
	}
	v, err := decodeRecord[V](e)
	return v, e, err
}

// decodeRecord decodes a record's value.
func decodeRecord[V any](e store.Ephemeral) (V, error) {
	var v V
	if err := json.Unmarshal(e.Value, &v); err != nil {
		return v, fmt.Errorf("decode ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	return v, nil
}

// putRecord stores v as a new record; store.ErrConflict if an unexpired
// one has its kind and key.
func putRecord(ctx context.Context, st store.Store, kind, key string, v any, expires, now time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode ephemeral record %s/%s: %w", kind, key, err)
	}
	return st.PutEphemeral(ctx, store.Ephemeral{Kind: kind, Key: key, Value: b, ExpiresAt: expires}, now)
}

// updateRecord replaces the value of e, as read, with v and its expiry
// with e.ExpiresAt, if no one changed the record since it was read: else
// store.ErrConflict, or store.ErrNotFound if it is gone. Either way the
// caller reads it again and retries.
func updateRecord(ctx context.Context, st store.Store, e store.Ephemeral, v any, now time.Time) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode ephemeral record %s/%s: %w", e.Kind, e.Key, err)
	}
	e.Value = b
	_, err = st.UpdateEphemeral(ctx, e, now)
	return err
}

// lostRace reports whether a compare-and-swap write failed because another
// request changed or removed the record first.
func lostRace(err error) bool {
	return errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound)
}

// purgeExpired deletes the store's expired ephemeral records, at most once
// per purgeEvery on this issuer. Reads ignore expired records anyway; the
// purge only keeps the store small. A failure is logged and retried a
// period later.
func (i *Issuer) purgeExpired(ctx context.Context) {
	now := i.cfg.Now()
	i.purgeMu.Lock()
	due := now.Sub(i.lastPurge) >= purgeEvery
	if due {
		i.lastPurge = now
	}
	i.purgeMu.Unlock()
	if !due {
		return
	}
	n, err := i.cfg.Store.PurgeEphemeral(ctx, now)
	if err != nil {
		i.logger.Warn("expired sign-in state not purged", "err", err)
		return
	}
	i.logger.Debug("expired sign-in state purged", "count", n)
}
