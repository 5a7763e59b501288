package issuer

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// newTestLockout is a lockout with free failures in a new store.
func newTestLockout(t *testing.T, free int) *lockout {
	t.Helper()
	st, _ := newStoreAndKey(t)
	return &lockout{st: st, kind: kindLockoutLogin, free: free}
}

// try is one attempt by key at now; it fails the test on an error.
func (l *lockout) try(t *testing.T, key string, now time.Time) time.Duration {
	t.Helper()
	d, err := l.attempt(t.Context(), key, now)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLockout(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newTestLockout(t, 3)
	// Each step is one attempt at t0 plus at; ok means it was let through.
	steps := []struct {
		at   time.Duration
		want time.Duration // the wait answered; 0: let through
	}{
		{0, 0}, {0, 0}, {0, 0}, // three free; the third locks for 1 s
		{0, time.Second},
		{time.Second, 0},                    // locks for 2 s
		{2 * time.Second, time.Second},      // 1 s left
		{3 * time.Second, 0},                // locks for 4 s
		{7 * time.Second, 0},                // 8 s
		{15 * time.Second, 0},               // 16 s
		{15*time.Second + lockoutForget, 0}, // forgotten: the count starts again
		{15*time.Second + lockoutForget, 0}, // 2nd
		{15*time.Second + lockoutForget, 0}, // 3rd, locks
		{15*time.Second + lockoutForget, time.Second},
	}
	var got, want []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("+%s: wait %s", s.at, l.try(t, "k", t0.Add(s.at))))
		want = append(want, fmt.Sprintf("+%s: wait %s", s.at, s.want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLockoutCap(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newTestLockout(t, 1)
	now := t0
	for range 40 {
		now = now.Add(l.try(t, "k", now))
		l.try(t, "k", now)
	}
	if w := l.try(t, "k", now); w != lockoutMax {
		t.Errorf("wait %s, want the maximum %s", w, lockoutMax)
	}
}

func TestLockoutForgiveAndReset(t *testing.T) {
	ctx := t.Context()
	t0 := time.Unix(1_000_000, 0)
	l := newTestLockout(t, 2)
	l.try(t, "k", t0)
	must(t, l.forgive(ctx, "k", t0)) // it was not a failure
	l.try(t, "k", t0)
	if w := l.try(t, "k", t0); w != 0 {
		t.Errorf("the second counted attempt waited %s", w)
	}
	if w := l.try(t, "k", t0); w != time.Second {
		t.Errorf("after two failures: wait %s, want 1s", w)
	}
	must(t, l.reset(ctx, "k"))
	if w := l.try(t, "k", t0); w != 0 {
		t.Errorf("after reset: wait %s", w)
	}
	// Forgiving a key without failures, or resetting it, changes nothing.
	must(t, l.forgive(ctx, "other", t0))
	must(t, l.reset(ctx, "other"))
	// Other keys and other kinds are counted apart.
	guesses := &lockout{st: l.st, kind: kindLockoutAddr, free: 2}
	if w := guesses.try(t, "k", t0); w != 0 {
		t.Errorf("another kind: wait %s", w)
	}
}

// TestLockoutConcurrent checks that attempts started at once, through two
// lockouts on one store (two replicas), are let through only as many
// times as the free failures allow: each is counted when it starts.
func TestLockoutConcurrent(t *testing.T) {
	const free, attempts = 3, 12
	a := newTestLockout(t, free)
	b := &lockout{st: a.st, kind: a.kind, free: free}
	t0 := time.Unix(1_000_000, 0)
	start := make(chan struct{})
	type result struct {
		wait time.Duration
		err  error
	}
	results := make(chan result, attempts) // each attempt sends one
	var wg sync.WaitGroup
	for n := range attempts {
		l := a
		if n%2 == 1 {
			l = b
		}
		wg.Go(func() {
			<-start
			d, err := l.attempt(t.Context(), "k", t0)
			results <- result{d, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	let := 0
	for r := range results {
		switch {
		case r.err != nil:
			t.Errorf("attempt: %v", r.err)
		case r.wait == 0:
			let++
		}
	}
	if let != free {
		t.Errorf("%d of %d concurrent attempts let through, want %d", let, attempts, free)
	}
}

func TestAddressKey(t *testing.T) {
	tests := []struct{ addr, want string }{
		{"192.0.2.1:5000", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:5000", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:443", "2001:db8:1:2::/64"},
		{"pipe", "pipe"},
	}
	for _, tt := range tests {
		if got := addressKey(tt.addr); got != tt.want {
			t.Errorf("addressKey(%q) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
