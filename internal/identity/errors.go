package identity

import (
	"errors"
	"fmt"
	"time"
)

// Reasons a token or an assertion is refused. Every refusal is a
// *TokenError whose Reason is one of these, so callers match with
// errors.Is(err, ErrExpired) and answer 401 with err.Error(), which names
// the reason and never contains the token.
var (
	ErrTokenTooLarge       = errors.New("token too large")
	ErrMalformed           = errors.New("malformed token")
	ErrDisallowedAlgorithm = errors.New("signing algorithm not allowed")
	ErrUnknownIssuer       = errors.New("unknown issuer")
	ErrBadSignature        = errors.New("bad signature")
	ErrWrongAudience       = errors.New("wrong audience")
	ErrExpired             = errors.New("token expired")
	ErrNotYetValid         = errors.New("token not yet valid")
	ErrUnknownTenant       = errors.New("tenant not allowed")
	ErrMissingID           = errors.New("missing ID claim")
	ErrSystemIdentity      = errors.New("system: identities are refused")
	ErrTooManyGroups       = errors.New("too many groups")
	// ErrUnknownPrincipal: a valid token of the hub's embedded issuer names
	// a principal that has since been deleted.
	ErrUnknownPrincipal = errors.New("unknown principal")
	// ErrGroupOverage: the token's groups are in an overage source the hub
	// will not or cannot ask (endpoint host not allowed, no source named,
	// no GroupSource configured).
	ErrGroupOverage = errors.New("group overage not resolvable")
)

// Conditions that are not the caller's fault: the hub answers 503 and
// logs. They are returned wrapped, never as a *TokenError.
var (
	// ErrIssuerUnavailable: discovery or the key set of a configured
	// issuer could not be fetched (recently enough).
	ErrIssuerUnavailable = errors.New("issuer unavailable")
	// ErrGroupsUnavailable: a GroupSource failed to answer.
	ErrGroupsUnavailable = errors.New("groups unavailable")
)

// TokenError is a refusal: the token (or assertion) is not acceptable,
// whatever the hub's state.
type TokenError struct {
	// Reason is one of the Err* refusal sentinels above.
	Reason error
	// Detail says what exactly, safe to show to the caller.
	Detail string
}

func (e *TokenError) Error() string {
	if e.Detail == "" {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Detail
}

func (e *TokenError) Unwrap() error { return e.Reason }

func refuse(reason error, format string, args ...any) *TokenError {
	return &TokenError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// quoteBounded quotes a caller-supplied string for an error message,
// cutting it so a hostile value cannot make the message large.
func quoteBounded(s string) string {
	const max = 128
	if len(s) > max {
		return fmt.Sprintf("%q...", s[:max])
	}
	return fmt.Sprintf("%q", s)
}

// ago formats a duration for "expired 2m0s ago" style messages.
func ago(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(time.Second)
	}
	return d.String()
}
