package store

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tether.dev/tether/internal/access"
)

// Limits on principals and their credentials.
const (
	// MaxDisplayNameLen is the longest display name, in bytes (Entra's
	// limit, 256 characters, counted in bytes here).
	MaxDisplayNameLen = 256
	// MaxLoginNameLen is the longest login name, in bytes: an e-mail address
	// is at most 254.
	MaxLoginNameLen = 256
	// MaxPasswordHashLen is the longest password hash, in bytes; any
	// encoded bcrypt, scrypt or Argon2 hash fits.
	MaxPasswordHashLen = 1024
	// MaxDescriptionLen is the longest client secret description, in bytes.
	MaxDescriptionLen = 256
)

// Principal is a user, service principal or group of the hub's embedded
// directory. Principals of other OIDC issuers are not stored; role
// assignments may still name them.
//
// Credentials go into the store with CreatePrincipal and SetPasswordHash and
// come out only of the sign-in lookup, GetUserByLogin: every other read
// leaves PasswordHash nil, so listings never carry them.
type Principal struct {
	// ID is the object ID, the name the API server sees: a UUID in canonical
	// lowercase form (see ValidateObjectID), chosen by the caller.
	ID string
	// Type is access.PrincipalUser, access.PrincipalServicePrincipal or
	// access.PrincipalGroup.
	Type access.PrincipalType
	// DisplayName is free text (see ValidateDisplayName); not unique.
	DisplayName string
	// LoginName is a user's sign-in name, such as "alice@example.com";
	// required for users, empty for others. Login names are unique ignoring
	// case (see FoldLoginName); the store keeps the one given.
	LoginName string
	// ClientID is a service principal's application ID, with which it signs
	// in (the client credentials grant); required for service principals,
	// empty for others. A UUID in canonical lowercase form (see
	// ValidateUUID), chosen by the caller, unique.
	ClientID string
	// PasswordHash is a user's password hash, opaque to the store (hashing
	// and comparing are the caller's); empty when the user has no password,
	// and read back as nil then. Only users have one. See the type's doc for
	// when it is returned.
	PasswordHash []byte
	CreatedAt    time.Time
}

// PrincipalFilter selects principals for ListPrincipals. The zero value
// selects all.
type PrincipalFilter struct {
	// Type, when set, selects only the principals of that type.
	Type access.PrincipalType
}

// SecretHash is the SHA-256 hash of a client secret. The store never holds
// the secret itself.
type SecretHash [sha256.Size]byte

// ClientSecret is a secret with which a service principal signs in.
// ListClientSecrets leaves Hash zero; FindClientSecrets, the sign-in lookup,
// returns it.
type ClientSecret struct {
	// ID identifies the secret: a UUID (see ValidateUUID), chosen by the
	// caller.
	ID string
	// PrincipalID is the object ID of the service principal.
	PrincipalID string
	Hash        SecretHash
	// Description is free text, at most MaxDescriptionLen bytes; may be
	// empty.
	Description string
	CreatedAt   time.Time
	// ExpiresAt is the first instant at which the secret is no longer
	// valid; it must be after CreatedAt. Every secret expires.
	ExpiresAt time.Time
}

// Validate checks a principal for CreatePrincipal: a valid object ID, type
// and display name; a login name for a user and a client ID for a service
// principal, and neither for others; a password hash only for a user; and a
// creation time.
func (p Principal) Validate() error {
	if err := ValidateObjectID(p.ID); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	if err := validatePrincipalType(p.Type); err != nil {
		return fmt.Errorf("principal %s: %w", p.ID, err)
	}
	if err := ValidateDisplayName(p.DisplayName); err != nil {
		return fmt.Errorf("principal %s: %w", p.ID, err)
	}
	isUser, isSP := p.Type == access.PrincipalUser, p.Type == access.PrincipalServicePrincipal
	switch {
	case isUser:
		if err := ValidateLoginName(p.LoginName); err != nil {
			return fmt.Errorf("user %s: %w", p.ID, err)
		}
	case p.LoginName != "":
		return invalid("principal %s: a %s has no login name", p.ID, p.Type)
	}
	switch {
	case isSP:
		if err := ValidateUUID(p.ClientID); err != nil {
			return fmt.Errorf("service principal %s: client ID: %w", p.ID, err)
		}
	case p.ClientID != "":
		return invalid("principal %s: a %s has no client ID", p.ID, p.Type)
	}
	switch {
	case isUser:
		if err := ValidatePasswordHash(p.PasswordHash); err != nil {
			return fmt.Errorf("user %s: %w", p.ID, err)
		}
	case len(p.PasswordHash) > 0:
		return invalid("principal %s: a %s has no password", p.ID, p.Type)
	}
	if p.CreatedAt.IsZero() {
		return invalid("principal %s: creation time is required", p.ID)
	}
	return nil
}

// Validate checks a filter for ListPrincipals: an empty or known type.
func (f PrincipalFilter) Validate() error {
	if f.Type == "" {
		return nil
	}
	return validatePrincipalType(f.Type)
}

// Validate checks a client secret for CreateClientSecret: valid IDs, a
// non-zero hash, a description of text, and an expiry after the creation
// time.
func (sec ClientSecret) Validate() error {
	if err := ValidateUUID(sec.ID); err != nil {
		return fmt.Errorf("client secret ID: %w", err)
	}
	if err := ValidateObjectID(sec.PrincipalID); err != nil {
		return fmt.Errorf("client secret %s: service principal: %w", sec.ID, err)
	}
	if sec.Hash == (SecretHash{}) {
		return invalid("client secret %s: hash is required", sec.ID)
	}
	if err := checkText("description", sec.Description, MaxDescriptionLen); err != nil {
		return fmt.Errorf("client secret %s: %w", sec.ID, err)
	}
	if sec.CreatedAt.IsZero() || sec.ExpiresAt.IsZero() {
		return invalid("client secret %s: creation and expiry times are required", sec.ID)
	}
	if !sec.ExpiresAt.After(sec.CreatedAt) {
		return invalid("client secret %s: expiry must be after creation", sec.ID)
	}
	return nil
}

// ValidateObjectID checks a principal's object ID as access.ValidateObjectID
// does; the error matches both ErrInvalid and access.ErrInvalid.
func ValidateObjectID(id string) error {
	if err := access.ValidateObjectID(id); err != nil {
		return &accessError{err: err}
	}
	return nil
}

// validatePrincipalType checks that t is one of the three principal types.
func validatePrincipalType(t access.PrincipalType) error {
	switch t {
	case access.PrincipalUser, access.PrincipalServicePrincipal, access.PrincipalGroup:
		return nil
	}
	if len(t) > MaxNameLen {
		return invalid("invalid principal type: want %s, %s or %s",
			access.PrincipalUser, access.PrincipalServicePrincipal, access.PrincipalGroup)
	}
	return invalid("invalid principal type %q: want %s, %s or %s",
		t, access.PrincipalUser, access.PrincipalServicePrincipal, access.PrincipalGroup)
}

// ValidateDisplayName checks a display name: 1 to MaxDisplayNameLen bytes of
// UTF-8 text without control characters or surrounding spaces. The error
// matches ErrInvalid.
func ValidateDisplayName(s string) error {
	if s == "" {
		return invalid("display name is required")
	}
	if err := checkText("display name", s, MaxDisplayNameLen); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return invalid("invalid display name %q: leading or trailing space", s)
	}
	return nil
}

// ValidateLoginName checks a user's login name: 1 to MaxLoginNameLen bytes
// of UTF-8, printable, without spaces, such as "alice@example.com". The
// store does not require an e-mail address, nor normalize Unicode: login
// names are compared after case folding only (see FoldLoginName). The error
// matches ErrInvalid.
func ValidateLoginName(s string) error {
	if s == "" {
		return invalid("login name is required")
	}
	if len(s) > MaxLoginNameLen {
		return invalid("invalid login name: longer than %d bytes", MaxLoginNameLen)
	}
	if !utf8.ValidString(s) {
		return invalid("invalid login name: not UTF-8")
	}
	if strings.ContainsFunc(s, func(r rune) bool { return r == ' ' || !unicode.IsPrint(r) }) {
		return invalid("invalid login name %+q: spaces and unprintable characters are not allowed", s)
	}
	return nil
}

// FoldLoginName returns the key under which the store keeps a login name
// unique and looks it up: two valid login names have the same key exactly
// when strings.EqualFold reports them equal (Unicode simple case folding),
// so "Alice@Example.COM" and "alice@example.com" are one user. Every
// backend stores and compares this key, so all agree on what is a
// duplicate. The key is for comparison only, not for display.
func FoldLoginName(s string) string {
	return strings.Map(foldRune, s)
}

// foldRune maps r to the least rune of its simple case-folding orbit (the
// runes unicode.SimpleFold cycles through from r), a representative that
// every rune of the orbit shares.
func foldRune(r rune) rune {
	least := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		least = min(least, f)
	}
	return least
}

// ValidatePasswordHash checks a password hash: at most MaxPasswordHashLen
// bytes; empty means no password. The store does not interpret it. The
// error matches ErrInvalid.
func ValidatePasswordHash(h []byte) error {
	if len(h) > MaxPasswordHashLen {
		return invalid("password hash: longer than %d bytes", MaxPasswordHashLen)
	}
	return nil
}
