// Package backoff is the agent's reconnect policy: exponential backoff with
// full jitter and a cap, grown by the time already spent waiting.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is exponential backoff with full jitter and a cap: each wait is
// uniform in [0, c), where the ceiling c is half the waits since Reset
// added up, at least min and at most max. The caller resets it once a
// connection has stayed up long enough (the agent: 30 s).
//
// Growing the ceiling with the time already waited, rather than with the
// count of attempts, bounds how long anyone waits past the end of an
// outage: after an outage of D, the wait that spans its end is shorter
// than D/2 (or min), and the median agent is back about D/7 after it.
// Doubling per attempt let the agents whose first waits happened to be
// short climb to ceilings of several times D. Against a hub that stays
// down the ceiling still grows geometrically (by a quarter per attempt on
// average), so the attempts thin out as 1/t until the cap, which is
// reached after 2*max of waiting: from then on a hub that refuses sees
// each agent about once per max/2, as before. The jitter keeps a fleet
// that lost its hub at one moment from coming back in waves.
//
// It is not safe for concurrent use.
type Backoff struct {
	min, max time.Duration
	// rand returns a value in [0, n); injectable for tests.
	rand func(n int64) int64
	// waited is the waits returned since Reset, added up (capped at
	// 2*max, beyond which it changes nothing).
	waited time.Duration
}

// New returns a backoff whose waits start below min and never exceed max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max, rand: rand.Int64N}
}

// Next returns how long to wait before the next attempt.
func (b *Backoff) Next() time.Duration {
	ceiling := min(b.max, max(b.min, b.waited/2))
	d := time.Duration(b.rand(int64(ceiling)) + 1)
	b.waited = min(b.waited+d, 2*b.max)
	return d
}

// Reset starts again from min: call it once a connection has stayed up
// long enough.
func (b *Backoff) Reset() { b.waited = 0 }
