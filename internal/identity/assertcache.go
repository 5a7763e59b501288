package identity

import (
	"crypto/sha256"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Signing and verifying an Ed25519 assertion costs about 20 and 60
// microseconds of CPU, more than everything else a small request costs the
// hub and the agent together. Both sides therefore reuse their work for a
// short while: the hub attaches the same signed assertion to every request
// of one caller for one cluster for up to AssertionReuse, and the agent
// remembers the assertions it verified until they expire. Nothing is
// weaker for it: an assertion was always valid for its whole lifetime (a
// replay within it was possible before as after), the hub still decides
// every request before it attaches one, and an agent checks a remembered
// assertion's audience and time window on every use.

// AssertionReuse is how long the hub attaches one signed assertion to the
// requests of the same caller for the same cluster: a third of its
// lifetime, so that the agent always receives one with at least 20 s left.
const AssertionReuse = DefaultAssertionLifetime / 3

// assertionCacheSize bounds the assertions each side remembers; when full,
// the expired ones are dropped, and if none is, all of them.
const assertionCacheSize = 4096

type signedAssertion struct {
	token    string
	signedAt time.Time
}

type assertionReuse struct {
	mu sync.Mutex
	m  map[string]signedAssertion
}

// Reuse returns a signed assertion for a: the one signed for the same
// cluster, mode, subject and groups within the last AssertionReuse, or a
// new one (Sign). a's ID, IssuedAt and Expiry must be zero.
func (s *AssertionSigner) Reuse(a Assertion, now time.Time) (string, error) {
	key := reuseKey(a)
	s.reuse.mu.Lock()
	e, ok := s.reuse.m[key]
	s.reuse.mu.Unlock()
	if age := now.Sub(e.signedAt); ok && age >= 0 && age < AssertionReuse {
		return e.token, nil
	}
	token, err := s.Sign(a, now)
	if err != nil {
		return "", err
	}
	s.reuse.mu.Lock()
	defer s.reuse.mu.Unlock()
	if s.reuse.m == nil {
		s.reuse.m = make(map[string]signedAssertion)
	}
	if len(s.reuse.m) >= assertionCacheSize {
		for k, e := range s.reuse.m {
			if age := now.Sub(e.signedAt); age < 0 || age >= AssertionReuse {
				delete(s.reuse.m, k)
			}
		}
		if len(s.reuse.m) >= assertionCacheSize {
			clear(s.reuse.m)
		}
	}
	s.reuse.m[key] = signedAssertion{token: token, signedAt: now}
	return token, nil
}

// reuseKey names what an assertion asserts, each part prefixed with its
// length so that no two different assertions share a key, whatever bytes
// a group name holds.
func reuseKey(a Assertion) string {
	var b strings.Builder
	for _, part := range append([]string{a.Cluster, string(a.Mode), a.Subject}, a.Groups...) {
		b.WriteString(strconv.Itoa(len(part)))
		b.WriteByte(':')
		b.WriteString(part)
	}
	return b.String()
}

// verifiedAssertions are the assertions an AssertionVerifier accepted, by
// the SHA-256 of the whole token.
type verifiedAssertions struct {
	mu sync.Mutex
	m  map[[sha256.Size]byte]Assertion
}

func (v *verifiedAssertions) get(key [sha256.Size]byte) (Assertion, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	a, ok := v.m[key]
	return a, ok
}

func (v *verifiedAssertions) put(key [sha256.Size]byte, a Assertion, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.m == nil {
		v.m = make(map[[sha256.Size]byte]Assertion)
	}
	if len(v.m) >= assertionCacheSize {
		for k, e := range v.m {
			if checkAssertionTime(e.IssuedAt, e.Expiry, now) != nil {
				delete(v.m, k)
			}
		}
		if len(v.m) >= assertionCacheSize {
			clear(v.m)
		}
	}
	v.m[key] = a
}
