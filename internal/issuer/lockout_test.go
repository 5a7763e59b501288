package issuer

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLockout(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLockout(3)
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
		got = append(got, fmt.Sprintf("+%s: wait %s", s.at, l.attempt("k", t0.Add(s.at))))
		want = append(want, fmt.Sprintf("+%s: wait %s", s.at, s.want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestLockoutCap(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLockout(1)
	now := t0
	for range 40 {
		now = now.Add(l.attempt("k", now))
		l.attempt("k", now)
	}
	if w := l.attempt("k", now); w != lockoutMax {
		t.Errorf("wait %s, want the maximum %s", w, lockoutMax)
	}
}

func TestLockoutForgiveAndReset(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLockout(2)
	l.attempt("k", t0)
	l.forgive("k") // it was not a failure
	l.attempt("k", t0)
	if w := l.attempt("k", t0); w != 0 {
		t.Errorf("the second counted attempt waited %s", w)
	}
	if w := l.attempt("k", t0); w != time.Second {
		t.Errorf("after two failures: wait %s, want 1s", w)
	}
	l.reset("k")
	if w := l.attempt("k", t0); w != 0 {
		t.Errorf("after reset: wait %s", w)
	}
}

// TestLockoutBounded checks that the table stays bounded and that a flood
// of new keys evicts the keys with the fewest failures, not a locked-out
// one.
func TestLockoutBounded(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	l := newLockout(2)
	l.size = 100
	l.attempt("victim", t0)
	l.attempt("victim", t0) // locked for 1 s
	for i := range 1000 {
		l.attempt(fmt.Sprint("flood-", i), t0)
	}
	if n := len(l.keys); n > l.size {
		t.Errorf("%d keys, at most %d", n, l.size)
	}
	if w := l.attempt("victim", t0); w != time.Second {
		t.Errorf("the victim's lock-out was lifted by the flood: wait %s", w)
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
