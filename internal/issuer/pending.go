package issuer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"tether.dev/tether/internal/store"
)

var (
	// errFull: maxPending unexpired entries of the kind are stored.
	errFull = errors.New("too many sign-ins are in progress on this hub; try again in a few minutes")
	// errDuplicate: the user code is already pending.
	errDuplicate = errors.New("duplicate user code")
)

// expiredGrace is how long after its expiry a device code's record is
// kept, so that its polls are answered expired_token rather than
// invalid_grant.
const expiredGrace = 10 * time.Minute

// deviceState is where a device code stands.
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
)

// deviceGrant is a pending device authorization, the value of its
// kindDeviceCode record.
type deviceGrant struct {
	// UserCode is the key of the kindUserCode record: the recordKey of
	// the normalized user code.
	UserCode string   `json:"user_code"`
	Scopes   []string `json:"scopes"`
	// Interval is the least time between polls; it grows with slow_down.
	Interval time.Duration `json:"interval"`
	LastPoll time.Time     `json:"last_poll,omitzero"`
	// Expires is the first instant the device code is no longer valid;
	// its record lives expiredGrace longer.
	Expires time.Time   `json:"expires"`
	State   deviceState `json:"state"`
	// User is who approved.
	User person `json:"user,omitzero"`
}

// userCodeRecord is the value of a kindUserCode record.
type userCodeRecord struct {
	// Device is the key of the kindDeviceCode record.
	Device string `json:"device"`
}

// pollState is the outcome of a device code poll.
type pollState int

const (
	pollUnknown pollState = iota
	pollExpired
	pollTooFast
	pollPending
	pollDenied
	pollApproved
)

// deviceStore keeps the pending device codes in the store: a
// kindDeviceCode record for each, and a kindUserCode record for its user
// code that points to it and expires with it.
type deviceStore struct {
	st     store.Store
	logger *slog.Logger
	max    int // pending device codes at most, counted by their user codes
}

// add stores a new grant, g.Expires set, with deviceCode and userCode
// (normalized). It returns errDuplicate if the user code is pending (the
// caller draws another), and errFull.
func (s *deviceStore) add(ctx context.Context, now time.Time, deviceCode, userCode string, g deviceGrant) error {
	n, err := s.st.CountEphemeral(ctx, kindUserCode, now)
	if err != nil {
		return fmt.Errorf("count pending device codes: %w", err)
	}
	if n >= s.max {
		return errFull
	}
	deviceKey := recordKey(deviceCode)
	g.UserCode = recordKey(userCode)
	err = putRecord(ctx, s.st, kindUserCode, g.UserCode, userCodeRecord{Device: deviceKey}, g.Expires, now)
	switch {
	case errors.Is(err, store.ErrConflict):
		return errDuplicate
	case err != nil:
		return fmt.Errorf("store user code: %w", err)
	}
	if err := putRecord(ctx, s.st, kindDeviceCode, deviceKey, g, g.Expires.Add(expiredGrace), now); err != nil {
		s.dropUserCode(ctx, g.UserCode)
		return fmt.Errorf("store device code: %w", err)
	}
	return nil
}

// dropUserCode deletes a user code's record, which no longer stands for
// a pending device code. A failure is only logged: the record expires
// with its device code, and until then leads to no pending one.
func (s *deviceStore) dropUserCode(ctx context.Context, key string) {
	if err := s.st.DeleteEphemeral(ctx, kindUserCode, key); err != nil {
		s.logger.Warn("user code not deleted", "err", err)
	}
}

// poll is one poll of the token endpoint for deviceCode (RFC 8628 3.5). A
// decided grant is taken from the store: of concurrent polls, on any
// replicas, exactly one redeems an approval.
func (s *deviceStore) poll(ctx context.Context, now time.Time, deviceCode string) (deviceGrant, pollState, error) {
	key := recordKey(deviceCode)
	var g deviceGrant
	for range casAttempts {
		var e store.Ephemeral
		var err error
		g, e, err = getRecord[deviceGrant](ctx, s.st, kindDeviceCode, key, now)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return deviceGrant{}, pollUnknown, nil
		case err != nil:
			return deviceGrant{}, 0, fmt.Errorf("poll device code: %w", err)
		case !now.Before(g.Expires):
			return deviceGrant{}, pollExpired, nil
		case g.State != devicePending:
			return s.redeem(ctx, now, key)
		}
		state := pollPending
		last := g.LastPoll
		g.LastPoll = now
		if !last.IsZero() && now.Sub(last) < g.Interval {
			g.Interval += 5 * time.Second // as the client does (RFC 8628 3.5)
			state = pollTooFast
		}
		err = updateRecord(ctx, s.st, e, g, now)
		switch {
		case lostRace(err):
			continue // decided, polled or redeemed meanwhile: read again
		case err != nil:
			return deviceGrant{}, 0, fmt.Errorf("poll device code: %w", err)
		}
		return g, state, nil
	}
	// Every read lost to another poll of the same code: it polls too fast.
	return g, pollTooFast, nil
}

// redeem takes a decided device code's record: an approval is redeemed
// once, a denial told once.
func (s *deviceStore) redeem(ctx context.Context, now time.Time, key string) (deviceGrant, pollState, error) {
	e, err := s.st.TakeEphemeral(ctx, kindDeviceCode, key, now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return deviceGrant{}, pollUnknown, nil // another poll took it
	case err != nil:
		return deviceGrant{}, 0, fmt.Errorf("redeem device code: %w", err)
	}
	// A decision is final: the record taken is the one read.
	g, err := decodeRecord[deviceGrant](e)
	if err != nil {
		return deviceGrant{}, 0, err
	}
	s.dropUserCode(ctx, g.UserCode)
	switch g.State {
	case deviceApproved:
		return g, pollApproved, nil
	case deviceDenied:
		return g, pollDenied, nil
	}
	return deviceGrant{}, 0, fmt.Errorf("redeem device code: state %d is not a decision", g.State)
}

// pendingGrant returns the record of the device code that userCode
// (normalized) names, if it waits for a decision; else store.ErrNotFound.
func (s *deviceStore) pendingGrant(ctx context.Context, now time.Time, userCode string) (store.Ephemeral, deviceGrant, error) {
	uc, _, err := getRecord[userCodeRecord](ctx, s.st, kindUserCode, recordKey(userCode), now)
	if err != nil {
		return store.Ephemeral{}, deviceGrant{}, err
	}
	g, e, err := getRecord[deviceGrant](ctx, s.st, kindDeviceCode, uc.Device, now)
	if err != nil {
		return store.Ephemeral{}, deviceGrant{}, err
	}
	if g.State != devicePending || !now.Before(g.Expires) {
		return store.Ephemeral{}, deviceGrant{}, fmt.Errorf("device code decided or expired: %w", store.ErrNotFound)
	}
	return e, g, nil
}

// pending reports whether userCode (normalized) names a device code
// waiting for a decision.
func (s *deviceStore) pending(ctx context.Context, now time.Time, userCode string) (bool, error) {
	_, _, err := s.pendingGrant(ctx, now, userCode)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look up user code: %w", err)
	}
	return true, nil
}

// decide approves the device code of userCode (normalized) for p, or
// denies it. It reports false if the code is no longer pending.
func (s *deviceStore) decide(ctx context.Context, now time.Time, userCode string, approve bool, p person) (bool, error) {
	for range casAttempts {
		e, g, err := s.pendingGrant(ctx, now, userCode)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return false, nil
		case err != nil:
			return false, fmt.Errorf("decide device code: %w", err)
		}
		g.State = deviceDenied
		if approve {
			g.State, g.User = deviceApproved, p
		}
		err = updateRecord(ctx, s.st, e, g, now)
		switch {
		case lostRace(err):
			continue // polled meanwhile: read again
		case err != nil:
			return false, fmt.Errorf("decide device code: %w", err)
		}
		return true, nil
	}
	return false, fmt.Errorf("decide device code: %w", errBusy)
}

// authCode is an issued authorization code's request and sign-in, the
// value of its kindAuthCode record.
type authCode struct {
	ClientID    string   `json:"client_id"`
	RedirectURI string   `json:"redirect_uri"`
	Challenge   string   `json:"challenge"` // PKCE S256
	Scopes      []string `json:"scopes"`
	Nonce       string   `json:"nonce,omitempty"`
	User        person   `json:"user"`
}

// codeStore keeps the unredeemed authorization codes in the store.
type codeStore struct {
	st  store.Store
	max int // unredeemed codes at most
}

// add stores a new code; errFull if max are unredeemed.
func (s *codeStore) add(ctx context.Context, now time.Time, code string, ac authCode, expires time.Time) error {
	n, err := s.st.CountEphemeral(ctx, kindAuthCode, now)
	if err != nil {
		return fmt.Errorf("count authorization codes: %w", err)
	}
	if n >= s.max {
		return errFull
	}
	if err := putRecord(ctx, s.st, kindAuthCode, recordKey(code), ac, expires, now); err != nil {
		return fmt.Errorf("store authorization code: %w", err)
	}
	return nil
}

// take removes the code and returns it if it was valid: of concurrent
// redemptions, on any replicas, at most one gets it.
func (s *codeStore) take(ctx context.Context, now time.Time, code string) (authCode, bool, error) {
	e, err := s.st.TakeEphemeral(ctx, kindAuthCode, recordKey(code), now)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return authCode{}, false, nil
	case err != nil:
		return authCode{}, false, fmt.Errorf("redeem authorization code: %w", err)
	}
	ac, err := decodeRecord[authCode](e)
	return ac, err == nil, err
}
