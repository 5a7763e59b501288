package hub

import (
	"crypto/sha256"
	"sync"
	"time"

	"tether.dev/tether/internal/identity"
)

// decisions remembers the assertions the hub made for signed-in callers a
// short while ago, so that while its store is unreachable a caller who was
// allowed to reach a cluster a moment ago stays allowed: until their token
// expires, and at most staleFor after the decision. It is consulted only
// when the store fails to answer; a store that answers decides every
// request afresh.
type decisions struct {
	staleFor time.Duration
	max      int

	mu sync.Mutex
	m  map[[sha256.Size]byte]decision // guarded by mu
}

type decision struct {
	a       identity.Assertion
	at      time.Time // when the store last confirmed it
	expires time.Time // the token's expiry
}

func newDecisions(staleFor time.Duration, max int) *decisions {
	return &decisions{staleFor: staleFor, max: max, m: map[[sha256.Size]byte]decision{}}
}

// decisionKey identifies one token's decision for one cluster; the token
// itself is not kept.
func decisionKey(token, cluster string) [sha256.Size]byte {
	return sha256.Sum256([]byte(cluster + "\x00" + token))
}

// put records a decision made at now for a token that expires at expires.
func (d *decisions) put(key [sha256.Size]byte, a identity.Assertion, now, expires time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.m[key]; !ok && len(d.m) >= d.max {
		for k, v := range d.m { // drop what can no longer be used, else anything
			if !d.usable(v, now) {
				delete(d.m, k)
			}
		}
		for k := range d.m {
			if len(d.m) < d.max {
				break
			}
			delete(d.m, k)
		}
	}
	d.m[key] = decision{a: a, at: now, expires: expires}
}

// get returns the decision under key if it may still stand in for the
// store at now.
func (d *decisions) get(key [sha256.Size]byte, now time.Time) (identity.Assertion, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v, ok := d.m[key]
	if !ok || !d.usable(v, now) {
		return identity.Assertion{}, false
	}
	return v.a, true
}

func (d *decisions) usable(v decision, now time.Time) bool {
	return now.Before(v.expires) && now.Sub(v.at) < d.staleFor
}
