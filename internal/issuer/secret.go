package issuer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"tether.dev/tether/internal/store"
)

// ClientSecretPrefix marks a service principal's client secret, so secret
// scanners and people can recognise one.
const ClientSecretPrefix = "tcs_"

// Password limits. The upper bound keeps a hash request cheap to refuse.
const (
	MinPasswordLen = 12  // characters
	MaxPasswordLen = 256 // bytes
)

// Argon2id parameters: OWASP's minimum recommendation (19 MiB, 2 passes,
// one lane), so a flood of sign-ins cannot exhaust the hub's memory.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	argonKeyLen  = 32
	argonSaltLen = 16
)

// argonSlots bounds the Argon2id computations running at once: each takes
// argonMemory (19 MiB) for about 20 ms, so a flood of sign-ins queues here
// instead of growing the hub's memory without limit.
var argonSlots = make(chan struct{}, max(2, runtime.GOMAXPROCS(0)))

func argonKey(pw, salt []byte, passes, mem uint32, threads uint8, keyLen uint32) []byte {
	argonSlots <- struct{}{}
	defer func() { <-argonSlots }()
	return argon2.IDKey(pw, salt, passes, mem, threads, keyLen)
}

// NewClientSecret returns a fresh client secret (shown once, never stored)
// and the hash the store keeps.
func NewClientSecret() (secret string, hash store.SecretHash) {
	secret = ClientSecretPrefix + rand.Text() + rand.Text()
	return secret, HashClientSecret(secret)
}

// HashClientSecret is the hash under which a client secret is stored:
// SHA-256, enough for a random secret of 256 bits.
func HashClientSecret(secret string) store.SecretHash {
	return sha256.Sum256([]byte(secret))
}

// MatchClientSecret reports whether secret is one of secrets, comparing
// every hash in constant time.
func MatchClientSecret(secret string, secrets []store.ClientSecret) bool {
	h := HashClientSecret(secret)
	match := 0
	for _, s := range secrets {
		match |= subtle.ConstantTimeCompare(h[:], s.Hash[:])
	}
	return match == 1
}

// NewPassword returns a random password for a user created without one.
func NewPassword() string { return rand.Text() }

// ValidatePassword checks a password a person chose.
func ValidatePassword(pw string) error {
	switch n := utf8.RuneCountInString(pw); {
	case !utf8.ValidString(pw):
		return errors.New("the password is not valid UTF-8")
	case n < MinPasswordLen:
		return fmt.Errorf("the password has %d characters; use at least %d", n, MinPasswordLen)
	case len(pw) > MaxPasswordLen:
		return fmt.Errorf("the password has %d bytes; use at most %d", len(pw), MaxPasswordLen)
	}
	return nil
}

// HashPassword returns the Argon2id hash of pw in the PHC string format.
func HashPassword(pw string) ([]byte, error) {
	if err := ValidatePassword(pw); err != nil {
		return nil, err
	}
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argonKey([]byte(pw), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Appendf(nil, "$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, argonMemory, argonTime, argonThreads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// CheckPassword reports whether pw matches hash, which HashPassword made.
// A hash in another format is an error, not a mismatch.
func CheckPassword(hash []byte, pw string) (bool, error) {
	if len(pw) > MaxPasswordLen {
		return false, nil
	}
	parts := strings.Split(string(hash), "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errors.New("password hash is not an Argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("password hash has Argon2 version %q, want v=%d", parts[2], argon2.Version)
	}
	var mem, passes uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &passes, &threads); err != nil {
		return false, fmt.Errorf("password hash parameters %q: %w", parts[3], err)
	}
	// Bounds keep a tampered hash from costing the hub unbounded memory.
	if mem == 0 || mem > 256*1024 || passes == 0 || passes > 16 || threads == 0 {
		return false, fmt.Errorf("password hash parameters %q are out of range", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return false, fmt.Errorf("password hash salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 64 {
		return false, errors.New("password hash key is not valid base64 of 1 to 64 bytes")
	}
	got := argonKey([]byte(pw), salt, passes, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}
