package agent

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter and a cap: the n-th wait
// is uniform in [0, min(max, min*2^n)). A connection that stayed up for
// stable resets it, so a hub restart is met with a quick reconnect while a
// hub that refuses every attempt is not hammered.
type backoff struct {
	min, max time.Duration
	// rand returns a value in [0, n); injectable for tests.
	rand    func(n int64) int64
	attempt int
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, rand: rand.Int64N}
}

// next returns how long to wait before the next attempt.
func (b *backoff) next() time.Duration {
	ceiling := b.max
	if b.attempt < 30 { // beyond that the shift overflows and the cap applies anyway
		if d := b.min << b.attempt; d > 0 && d < b.max {
			ceiling = d
		}
	}
	b.attempt++
	return time.Duration(b.rand(int64(ceiling)) + 1)
}

func (b *backoff) reset() { b.attempt = 0 }
