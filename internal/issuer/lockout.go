package issuer

import (
	"net/netip"
	"sync"
	"time"
)

// Lock-out policy.
const (
	// loginFreeFailures failed passwords for one login name are free; each
	// further one locks the name out, for lockoutBase doubling up to
	// lockoutMax.
	loginFreeFailures = 5
	// guessFreeFailures wrong user codes from one client address are free.
	guessFreeFailures = 10
	lockoutBase       = time.Second
	lockoutMax        = 15 * time.Minute
	// lockoutForget is how long after its last failure a key's count is
	// forgotten.
	lockoutForget = time.Hour
	// maxLockoutKeys bounds the keys each lockout tracks.
	maxLockoutKeys = 10_000
)

// lockout counts failed attempts per key (a login name, a client address)
// and locks a key out after its free failures, exponentially longer with
// each further failure. Attempts are counted as failures when they start
// (so concurrent attempts cannot exceed the allowance) and forgiven when
// they succeed. Memory is bounded: when full, the key with the fewest
// failures is forgotten first, so flooding the table with new keys does
// not lift a lock-out.
type lockout struct {
	free int
	size int

	mu   sync.Mutex
	keys map[string]*failures // guarded by mu
}

type failures struct {
	n     int       // counted attempts
	last  time.Time // of the last counted attempt
	until time.Time // locked out before this instant
}

func newLockout(free int) *lockout {
	return &lockout{free: free, size: maxLockoutKeys, keys: map[string]*failures{}}
}

// attempt starts an attempt by key at now. If key is locked out it returns
// how long it must still wait, and counts nothing; otherwise it counts the
// attempt as a failure (see forgive and reset) and returns zero.
func (l *lockout) attempt(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[key]
	if f != nil && now.Sub(f.last) >= lockoutForget {
		f = nil
		delete(l.keys, key)
	}
	if f != nil && now.Before(f.until) {
		return f.until.Sub(now)
	}
	if f == nil {
		l.makeRoomLocked(now)
		f = &failures{}
		l.keys[key] = f
	}
	f.n++
	f.last = now
	if extra := f.n - l.free; extra >= 0 {
		d := lockoutMax
		if extra < 20 { // 2^20 s is past the maximum
			d = min(lockoutBase<<extra, lockoutMax)
		}
		f.until = now.Add(d)
	}
	return 0
}

// forgive uncounts one attempt of key that turned out not to be a
// failure.
func (l *lockout) forgive(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.keys[key]
	if f == nil {
		return
	}
	f.n--
	if f.n < l.free {
		f.until = time.Time{}
	}
	if f.n <= 0 {
		delete(l.keys, key)
	}
}

// reset forgets key's failures: it proved itself.
func (l *lockout) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// makeRoomLocked frees a slot if the table is full: forgotten keys first,
// else the key with the fewest failures (the oldest of those).
func (l *lockout) makeRoomLocked(now time.Time) {
	if len(l.keys) < l.size {
		return
	}
	var victim string
	var vf *failures
	for k, f := range l.keys {
		if now.Sub(f.last) >= lockoutForget {
			delete(l.keys, k)
			continue
		}
		if vf == nil || f.n < vf.n || f.n == vf.n && f.last.Before(vf.last) {
			victim, vf = k, f
		}
	}
	if len(l.keys) >= l.size && vf != nil {
		delete(l.keys, victim)
	}
}

// addressKey is the lock-out key of a client address ("host:port"): the
// IP address, or for IPv6 its /64, which one client usually has whole.
func addressKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap()
	if p, err := a.Prefix(64); a.Is6() && err == nil {
		return p.String()
	}
	return a.String()
}
