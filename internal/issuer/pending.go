package issuer

import (
	"errors"
	"sync"
	"time"
)

var (
	// errFull: the table holds its maximum of unexpired entries.
	errFull = errors.New("too many sign-ins are in progress on this hub; try again in a few minutes")
	// errDuplicate: the key is already in the table.
	errDuplicate = errors.New("duplicate key")
)

// sweepEvery is how often adding to a table also drops its expired
// entries; a full table is swept at once.
const sweepEvery = time.Minute

// table is a bounded map whose entries expire. It is not safe for
// concurrent use: its owner guards it.
type table[V any] struct {
	max       int
	m         map[string]tableEntry[V]
	lastSweep time.Time
}

type tableEntry[V any] struct {
	v       V
	expires time.Time // the first instant the entry is no longer valid
}

func newTable[V any](max int) table[V] {
	return table[V]{max: max, m: map[string]tableEntry[V]{}}
}

// put adds an entry, sweeping expired ones first when the table is full
// or was not swept for a while.
func (t *table[V]) put(now time.Time, key string, v V, expires time.Time) error {
	if len(t.m) >= t.max || now.Sub(t.lastSweep) >= sweepEvery {
		t.sweep(now)
	}
	if _, dup := t.m[key]; dup {
		return errDuplicate
	}
	if len(t.m) >= t.max {
		return errFull
	}
	t.m[key] = tableEntry[V]{v: v, expires: expires}
	return nil
}

// get returns the entry under key if it has not expired. An expired entry
// is deleted, and reported as such.
func (t *table[V]) get(now time.Time, key string) (v V, ok, expired bool) {
	e, ok := t.m[key]
	if !ok {
		return v, false, false
	}
	if !now.Before(e.expires) {
		delete(t.m, key)
		return v, false, true
	}
	return e.v, true, false
}

func (t *table[V]) delete(key string) { delete(t.m, key) }

func (t *table[V]) sweep(now time.Time) {
	t.lastSweep = now
	for k, e := range t.m {
		if !now.Before(e.expires) {
			delete(t.m, k)
		}
	}
}

// deviceState is where a device code stands.
type deviceState int

const (
	devicePending deviceState = iota
	deviceApproved
	deviceDenied
)

// deviceGrant is a pending device authorization.
type deviceGrant struct {
	userCode string // normalized
	scopes   []string
	interval time.Duration // least time between polls; grows with slow_down
	lastPoll time.Time
	state    deviceState
	user     person // who approved
}

// pollState is the outcome of a device code poll.
type pollState int

const (
	pollUnknown pollState = iota
	pollExpired
	pollTooFast
	pollPending
	pollDenied
	pollApproved
)

// deviceStore holds the pending device codes, by device code and by user
// code.
type deviceStore struct {
	mu       sync.Mutex
	byDevice table[*deviceGrant] // guarded by mu
	byUser   table[string]       // guarded by mu; user code to device code
}

func newDeviceStore(max int) *deviceStore {
	return &deviceStore{byDevice: newTable[*deviceGrant](max), byUser: newTable[string](max)}
}

// add stores a new grant. It returns errDuplicate if the user code is
// taken (the caller draws another), and errFull.
func (s *deviceStore) add(now time.Time, deviceCode string, g *deviceGrant, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.byUser.put(now, g.userCode, deviceCode, expires); err != nil {
		return err
	}
	if err := s.byDevice.put(now, deviceCode, g, expires); err != nil {
		s.byUser.delete(g.userCode)
		return err
	}
	return nil
}

// poll is one poll of the token endpoint for deviceCode (RFC 8628 3.5). A
// decided grant is removed: an approval is redeemed once.
func (s *deviceStore) poll(now time.Time, deviceCode string) (deviceGrant, pollState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok, expired := s.byDevice.get(now, deviceCode)
	switch {
	case expired:
		return deviceGrant{}, pollExpired
	case !ok:
		return deviceGrant{}, pollUnknown
	}
	switch g.state {
	case deviceApproved, deviceDenied:
		s.byDevice.delete(deviceCode)
		s.byUser.delete(g.userCode)
		if g.state == deviceDenied {
			return *g, pollDenied
		}
		return *g, pollApproved
	}
	last := g.lastPoll
	g.lastPoll = now
	if !last.IsZero() && now.Sub(last) < g.interval {
		g.interval += 5 * time.Second // as the client does (RFC 8628 3.5)
		return *g, pollTooFast
	}
	return *g, pollPending
}

// pending reports whether userCode names a device code waiting for a
// decision.
func (s *deviceStore) pending(now time.Time, userCode string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.pendingLocked(now, userCode)
	return ok
}

func (s *deviceStore) pendingLocked(now time.Time, userCode string) (*deviceGrant, bool) {
	deviceCode, ok, _ := s.byUser.get(now, userCode)
	if !ok {
		return nil, false
	}
	g, ok, _ := s.byDevice.get(now, deviceCode)
	if !ok || g.state != devicePending {
		return nil, false
	}
	return g, true
}

// decide approves the device code of userCode for p, or denies it. It
// reports false if the code is no longer pending.
func (s *deviceStore) decide(now time.Time, userCode string, approve bool, p person) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, ok := s.pendingLocked(now, userCode)
	if !ok {
		return false
	}
	if approve {
		g.state, g.user = deviceApproved, p
	} else {
		g.state = deviceDenied
	}
	return true
}

// authCode is an issued authorization code's request and sign-in.
type authCode struct {
	clientID    string
	redirectURI string
	challenge   string // PKCE S256
	scopes      []string
	nonce       string
	user        person
}

// codeStore holds the unredeemed authorization codes.
type codeStore struct {
	mu    sync.Mutex
	codes table[authCode] // guarded by mu
}

func newCodeStore(max int) *codeStore {
	return &codeStore{codes: newTable[authCode](max)}
}

func (s *codeStore) add(now time.Time, code string, ac authCode, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.codes.put(now, code, ac, expires)
}

// take removes the code and returns it if it was valid: a code is
// redeemed at most once.
func (s *codeStore) take(now time.Time, code string) (authCode, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ac, ok, _ := s.codes.get(now, code)
	s.codes.delete(code)
	return ac, ok
}
