package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"tether.dev/tether/internal/store"
)

// Lock-out policy.
const (
	// loginFreeFailures failed passwords for one login name are free; each
	// further one locks the name out, for lockoutBase doubling up to
	// lockoutMax.
	loginFreeFailures = 5
	// guessFreeFailures wrong user codes from one client address are free.
	guessFreeFailures = 10
	lockoutBase       = time.Second
	lockoutMax        = 15 * time.Minute
	// lockoutForget is how long after its last failure a key's count is
	// forgotten: its record expires then.
	lockoutForget = time.Hour
)

// lockout counts failed attempts per key (a login name, a client address)
// and locks a key out after its free failures, exponentially longer with
// each further failure. Attempts are counted as failures when they start
// (so concurrent attempts cannot exceed the allowance) and forgiven when
// they succeed. The counts are records of kind in the store, by recordKey
// of the key, changed by compare and swap: every replica sharing the
// store counts against the same allowance.
type lockout struct {
	st   store.Store
	kind string
	free int
}

// failures is the value of a lock-out record.
type failures struct {
	N     int       `json:"n"`              // counted attempts
	Last  time.Time `json:"last"`           // of the last counted attempt
	Until time.Time `json:"until,omitzero"` // locked out before this instant
}

// attempt starts an attempt by key at now. If key is locked out it returns
// how long it must still wait, and counts nothing; otherwise it counts the
// attempt as a failure (see forgive and reset) and returns zero. On an
// error nothing is counted and the attempt must not go on.
func (l *lockout) attempt(ctx context.Context, key string, now time.Time) (time.Duration, error) {
	k := recordKey(key)
	for range casAttempts {
		f, e, err := getRecord[failures](ctx, l.st, l.kind, k, now)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// No failures, or forgotten: the count starts again.
		case err != nil:
			return 0, fmt.Errorf("lock-out check: %w", err)
		case now.Before(f.Until):
			return f.Until.Sub(now), nil
		}
		f.N++
		f.Last = now
		if extra := f.N - l.free; extra >= 0 {
			d := lockoutMax
			if extra < 20 { // 2^20 s is past the maximum
				d = min(lockoutBase<<extra, lockoutMax)
			}
			f.Until = now.Add(d)
		}
		expires := now.Add(lockoutForget)
		if e.Version == 0 {
			err = putRecord(ctx, l.st, l.kind, k, f, expires, now)
		} else {
			e.ExpiresAt = expires
			err = updateRecord(ctx, l.st, e, f, now)
		}
		switch {
		case lostRace(err):
			continue // another attempt counted first: read again
		case err != nil:
			return 0, fmt.Errorf("lock-out count: %w", err)
		}
		return 0, nil
	}
	return 0, fmt.Errorf("lock-out count: %w", errBusy)
}

// forgive uncounts one attempt of key that turned out not to be a
// failure.
func (l *lockout) forgive(ctx context.Context, key string, now time.Time) error {
	k := recordKey(key)
	for range casAttempts {
		f, e, err := getRecord[failures](ctx, l.st, l.kind, k, now)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("lock-out forgive: %w", err)
		}
		f.N = max(f.N-1, 0)
		if f.N < l.free {
			f.Until = time.Time{}
		}
		err = updateRecord(ctx, l.st, e, f, now)
		switch {
		case lostRace(err):
			continue
		case err != nil:
			return fmt.Errorf("lock-out forgive: %w", err)
		}
		return nil
	}
	return fmt.Errorf("lock-out forgive: %w", errBusy)
}

// reset forgets key's failures: it proved itself.
func (l *lockout) reset(ctx context.Context, key string) error {
	if err := l.st.DeleteEphemeral(ctx, l.kind, recordKey(key)); err != nil {
		return fmt.Errorf("lock-out reset: %w", err)
	}
	return nil
}

// addressKey is the lock-out key of a client address ("host:port"): the
// IP address, or for IPv6 its /64, which one client usually has whole.
func addressKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap()
	if p, err := a.Prefix(64); a.Is6() && err == nil {
		return p.String()
	}
	return a.String()
}
