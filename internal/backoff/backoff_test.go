package backoff

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const ms = time.Millisecond

func TestCeilings(t *testing.T) {
	b := New(500*ms, 5*time.Second)
	b.rand = func(n int64) int64 { return n - 1 } // the top of each range
	var got []time.Duration
	for range 11 {
		got = append(got, b.Next())
	}
	// min until half the time waited exceeds it, then half the time
	// waited (x1.5 at the top of each range), then the cap.
	want := []time.Duration{500 * ms, 500 * ms, 500 * ms, 750 * ms, 1125 * ms, 1687500 * time.Microsecond,
		2531250 * time.Microsecond, 3796875 * time.Microsecond, 5 * time.Second, 5 * time.Second, 5 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backoff ceilings (-want +got):\n%s", diff)
	}
	b.Reset()
	if d := b.Next(); d != 500*ms {
		t.Errorf("after reset: %s, want 500ms", d)
	}
	b.rand = func(int64) int64 { return 0 } // full jitter reaches the bottom
	if d := b.Next(); d != 1 {
		t.Errorf("bottom of the range: %s, want 1ns", d)
	}
	b.rand = func(n int64) int64 { return n - 1 }
	for range 1000 { // no overflow however long it fails
		b.Next()
	}
	if d := b.Next(); d != 5*time.Second {
		t.Errorf("after 1000 failures: %s, want the cap", d)
	}
}

// outage simulates agents that lose their hub at once and retry, failing
// at once, until it is back after down; it returns each agent's wait past
// the hub's return and its attempts.
func outage(seed uint64, agents int, down time.Duration) (late []time.Duration, attempts []int) {
	r := rand.New(rand.NewPCG(seed, seed))
	for range agents {
		b := New(500*ms, 30*time.Second)
		b.rand = r.Int64N
		var t time.Duration
		n := 1 // the first attempt, at once
		for t < down {
			t += b.Next()
			n++
		}
		late = append(late, t-down)
		attempts = append(attempts, n)
	}
	return late, attempts
}

func TestPastTheOutage(t *testing.T) {
	tests := []struct {
		name  string
		down  time.Duration
		worst time.Duration // the bound: half the outage, or min
	}{
		{name: "hub restart", down: 2 * time.Second, worst: time.Second},
		{name: "shorter than min", down: 300 * ms, worst: 500 * ms},
		{name: "minutes", down: 3 * time.Minute, worst: 30 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			late, _ := outage(1, 10000, tt.down)
			var worst time.Duration
			for _, d := range late {
				worst = max(worst, d)
			}
			if worst > tt.worst {
				t.Errorf("an agent came back %s after the hub, want at most %s", worst, tt.worst)
			}
		})
	}
}

// TestDownHub checks that a hub that stays down is not hammered: the
// attempts thin out to about one per max/2 per agent. (Doubling the
// ceiling per attempt from min made about 6, 10 and 46 attempts in these
// times: more early on now, the same once the cap is reached.)
func TestDownHub(t *testing.T) {
	tests := []struct {
		name string
		down time.Duration
		most float64 // attempts per agent on average
	}{
		{name: "first 10 s", down: 10 * time.Second, most: 17},
		{name: "first minute", down: time.Minute, most: 25},
		{name: "first 10 minutes", down: 10 * time.Minute, most: 62},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, attempts := outage(2, 2000, tt.down)
			sum := 0
			for _, n := range attempts {
				sum += n
			}
			// The last attempt of each is the one that found the hub back.
			if got := float64(sum)/float64(len(attempts)) - 1; got > tt.most {
				t.Errorf("%.1f attempts per agent, want at most %.0f", got, tt.most)
			}
		})
	}
}
