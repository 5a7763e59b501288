package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

// record is a valid ephemeral record expiring at t0+expires.
func record(kind, key, value string, expires time.Duration) store.Ephemeral {
	return store.Ephemeral{Kind: kind, Key: key, Value: []byte(value), ExpiresAt: at(expires)}
}

// storedRecord is e as the store returns it at version.
func storedRecord(e store.Ephemeral, version int64) store.Ephemeral {
	e.Version = version
	e.ExpiresAt = stored(e.ExpiresAt)
	return e
}

// mustPut puts e at now.
func mustPut(ctx context.Context, t *testing.T, s store.Store, e store.Ephemeral, now time.Time) {
	t.Helper()
	if err := s.PutEphemeral(ctx, e, now); err != nil {
		t.Fatalf("PutEphemeral(%s/%s): %v", e.Kind, e.Key, err)
	}
}

func testPutEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	longest := record(strings.Repeat("k", store.MaxEphemeralKeyLen), strings.Repeat("é", store.MaxEphemeralKeyLen/2), "", time.Hour)
	longest.Value = bytes.Repeat([]byte{0xff}, store.MaxEphemeralValueLen)

	// Applied in order; each step then reads the record of its kind and
	// key at t0+read.
	steps := []struct {
		name    string
		put     store.Ephemeral
		now     time.Time
		wantErr error
		read    time.Duration
		want    store.Ephemeral
		readErr error
	}{
		{
			name: "new record",
			put:  record("device-code", "ABCD-EFGH", "pending", time.Minute),
			now:  t0,
			read: 0,
			want: storedRecord(record("device-code", "ABCD-EFGH", "pending", time.Minute), 1),
		},
		{
			name:    "same kind and key, unexpired",
			put:     record("device-code", "ABCD-EFGH", "other", time.Hour),
			now:     at(time.Minute - time.Microsecond),
			wantErr: store.ErrConflict,
			read:    time.Minute - time.Microsecond,
			want:    storedRecord(record("device-code", "ABCD-EFGH", "pending", time.Minute), 1),
		},
		{
			name:    "read at its expiry",
			put:     record("auth-code", "xyz", "code", time.Minute),
			now:     t0,
			read:    time.Minute,
			readErr: store.ErrNotFound,
		},
		{
			name: "same key, another kind",
			put:  record("auth-code", "ABCD-EFGH", "code", time.Minute),
			now:  t0,
			read: 0,
			want: storedRecord(record("auth-code", "ABCD-EFGH", "code", time.Minute), 1),
		},
		{
			name: "replaces the expired record at its expiry",
			put:  record("device-code", "ABCD-EFGH", "again", 2*time.Minute),
			now:  at(time.Minute),
			read: time.Minute,
			want: storedRecord(record("device-code", "ABCD-EFGH", "again", 2*time.Minute), 1),
		},
		{
			name: "empty value",
			put:  record("sign-in-failures", "alice", "", time.Minute),
			now:  t0,
			read: 0,
			want: storedRecord(record("sign-in-failures", "alice", "", time.Minute), 1),
		},
		{
			name: "longest kind, key and value",
			put:  longest,
			now:  t0,
			read: 0,
			want: storedRecord(longest, 1),
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.PutEphemeral(t.Context(), tt.put, tt.now); !errors.Is(err, tt.wantErr) {
				t.Fatalf("PutEphemeral = %v, want %v", err, tt.wantErr)
			}
			got, err := s.GetEphemeral(t.Context(), tt.put.Kind, tt.put.Key, at(tt.read))
			if !errors.Is(err, tt.readErr) {
				t.Fatalf("GetEphemeral = %v, want %v", err, tt.readErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("GetEphemeral mismatch (-want +got):\n%s", diff)
			}
		})
	}

	// An updated record, once expired, is replaced at version 1.
	e := record("state", "s1", "v1", time.Minute)
	mustPut(ctx, t, s, e, t0)
	e.Version = 1
	if _, err := s.UpdateEphemeral(ctx, e, t0); err != nil {
		t.Fatalf("UpdateEphemeral: %v", err)
	}
	e = record("state", "s1", "v2", 2*time.Minute)
	mustPut(ctx, t, s, e, at(time.Minute))
	got, err := s.GetEphemeral(ctx, "state", "s1", at(time.Minute))
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	if diff := cmp.Diff(storedRecord(e, 1), got, opts); diff != "" {
		t.Errorf("record replacing an updated one (-want +got):\n%s", diff)
	}
}

func testEphemeralInvalid(t *testing.T, s store.Store) {
	with := func(f func(e *store.Ephemeral)) store.Ephemeral {
		e := record("device-code", "ABCD", "v", time.Minute)
		f(&e)
		return e
	}
	invalid := []struct {
		name string
		e    store.Ephemeral
		now  time.Time
	}{
		{"empty kind", with(func(e *store.Ephemeral) { e.Kind = "" }), t0},
		{"empty key", with(func(e *store.Ephemeral) { e.Key = "" }), t0},
		{"kind too long", with(func(e *store.Ephemeral) { e.Kind = strings.Repeat("k", store.MaxEphemeralKeyLen+1) }), t0},
		{"key too long", with(func(e *store.Ephemeral) { e.Key = strings.Repeat("k", store.MaxEphemeralKeyLen+1) }), t0},
		{"key with a control character", with(func(e *store.Ephemeral) { e.Key = "AB\nCD" }), t0},
		{"kind not UTF-8", with(func(e *store.Ephemeral) { e.Kind = "code\xff" }), t0},
		{"value too long", with(func(e *store.Ephemeral) { e.Value = make([]byte, store.MaxEphemeralValueLen+1) }), t0},
		{"zero expiry", with(func(e *store.Ephemeral) { e.ExpiresAt = time.Time{} }), t0},
		{"zero now", with(func(*store.Ephemeral) {}), time.Time{}},
	}
	for _, tt := range invalid {
		t.Run("put "+tt.name, func(t *testing.T) {
			if err := s.PutEphemeral(t.Context(), tt.e, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("PutEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
	}

	// Updates of a stored record: refused before the record is looked at.
	mustPut(t.Context(), t, s, record("device-code", "ABCD", "v", time.Minute), t0)
	for _, tt := range invalid {
		t.Run("update "+tt.name, func(t *testing.T) {
			e := tt.e
			e.Version = 1
			if _, err := s.UpdateEphemeral(t.Context(), e, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("UpdateEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
	}

	keys := []struct {
		name      string
		kind, key string
		now       time.Time
	}{
		{"empty kind", "", "ABCD", t0},
		{"empty key", "device-code", "", t0},
		{"kind too long", strings.Repeat("k", store.MaxEphemeralKeyLen+1), "ABCD", t0},
		{"key with a control character", "device-code", "AB\x00CD", t0},
		{"zero now", "device-code", "ABCD", time.Time{}},
	}
	for _, tt := range keys {
		t.Run("get "+tt.name, func(t *testing.T) {
			if _, err := s.GetEphemeral(t.Context(), tt.kind, tt.key, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("GetEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
		t.Run("take "+tt.name, func(t *testing.T) {
			if _, err := s.TakeEphemeral(t.Context(), tt.kind, tt.key, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("TakeEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
	}
	for _, tt := range keys[:4] { // DeleteEphemeral takes no time
		t.Run("delete "+tt.name, func(t *testing.T) {
			if err := s.DeleteEphemeral(t.Context(), tt.kind, tt.key); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("DeleteEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
	}
	counts := []struct {
		name string
		kind string
		now  time.Time
	}{
		{"empty kind", "", t0},
		{"kind too long", strings.Repeat("k", store.MaxEphemeralKeyLen+1), t0},
		{"kind with a control character", "device\tcode", t0},
		{"zero now", "device-code", time.Time{}},
	}
	for _, tt := range counts {
		t.Run("count "+tt.name, func(t *testing.T) {
			if _, err := s.CountEphemeral(t.Context(), tt.kind, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CountEphemeral = %v, want %v", err, store.ErrInvalid)
			}
		})
	}
	if _, err := s.PurgeEphemeral(t.Context(), time.Time{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("PurgeEphemeral(zero time) = %v, want %v", err, store.ErrInvalid)
	}

	// None of it changed the stored record.
	got, err := s.GetEphemeral(t.Context(), "device-code", "ABCD", t0)
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	if diff := cmp.Diff(storedRecord(record("device-code", "ABCD", "v", time.Minute), 1), got, opts); diff != "" {
		t.Errorf("record after invalid calls (-want +got):\n%s", diff)
	}
}

func testUpdateEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(ctx, t, s, record("device-code", "ABCD", "pending", time.Minute), t0)
	mustPut(ctx, t, s, record("device-code", "old", "pending", time.Minute), t0)
	versioned := func(e store.Ephemeral, v int64) store.Ephemeral {
		e.Version = v
		return e
	}

	// Applied in order. Each step then reads the record at t0+read.
	steps := []struct {
		name    string
		in      store.Ephemeral
		now     time.Time
		want    store.Ephemeral // as returned; zero on error
		wantErr error
		read    time.Duration
		stored  store.Ephemeral // as read then; zero if absent
	}{
		{
			name:   "first update",
			in:     versioned(record("device-code", "ABCD", "approved", 2*time.Minute), 1),
			now:    t0,
			want:   storedRecord(record("device-code", "ABCD", "approved", 2*time.Minute), 2),
			read:   0,
			stored: storedRecord(record("device-code", "ABCD", "approved", 2*time.Minute), 2),
		},
		{
			name:    "stale version",
			in:      versioned(record("device-code", "ABCD", "denied", time.Hour), 1),
			now:     t0,
			wantErr: store.ErrConflict,
			read:    0,
			stored:  storedRecord(record("device-code", "ABCD", "approved", 2*time.Minute), 2),
		},
		{
			name:    "future version",
			in:      versioned(record("device-code", "ABCD", "denied", time.Hour), 3),
			now:     t0,
			wantErr: store.ErrConflict,
			read:    0,
			stored:  storedRecord(record("device-code", "ABCD", "approved", 2*time.Minute), 2),
		},
		{
			name:   "second update extends the expiry",
			in:     versioned(record("device-code", "ABCD", "polled", time.Hour), 2),
			now:    at(2*time.Minute - time.Microsecond),
			want:   storedRecord(record("device-code", "ABCD", "polled", time.Hour), 3),
			read:   30 * time.Minute,
			stored: storedRecord(record("device-code", "ABCD", "polled", time.Hour), 3),
		},
		{
			name:    "expired record, right version",
			in:      versioned(record("device-code", "old", "approved", time.Hour), 1),
			now:     at(time.Minute),
			wantErr: store.ErrNotFound,
			read:    0,
			stored:  storedRecord(record("device-code", "old", "pending", time.Minute), 1),
		},
		{
			name:    "no such record",
			in:      versioned(record("device-code", "none", "approved", time.Hour), 1),
			now:     t0,
			wantErr: store.ErrNotFound,
			read:    0,
			stored:  store.Ephemeral{},
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.UpdateEphemeral(t.Context(), tt.in, tt.now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("UpdateEphemeral = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("UpdateEphemeral mismatch (-want +got):\n%s", diff)
			}
			read, err := s.GetEphemeral(t.Context(), tt.in.Kind, tt.in.Key, at(tt.read))
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("GetEphemeral: %v", err)
			}
			if diff := cmp.Diff(tt.stored, read, opts); diff != "" {
				t.Errorf("record after update (-want +got):\n%s", diff)
			}
		})
	}
}

func testPutEphemeralConcurrent(t *testing.T, s store.Store) {
	const n = 20
	ctx := t.Context()
	errs := race(n, func(i int) error {
		return s.PutEphemeral(ctx, record("device-code", "ABCD", fmt.Sprintf("value-%d", i), time.Minute), t0)
	})
	winner := exactlyOne(t, "put", errs, store.ErrConflict)
	got, err := s.GetEphemeral(ctx, "device-code", "ABCD", t0)
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	want := storedRecord(record("device-code", "ABCD", fmt.Sprintf("value-%d", winner), time.Minute), 1)
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("record after concurrent puts (-want +got):\n%s", diff)
	}
}

func testUpdateEphemeralConcurrent(t *testing.T, s store.Store) {
	const n = 20
	ctx := t.Context()
	mustPut(ctx, t, s, record("sign-in-failures", "alice", "0", time.Minute), t0)
	errs := race(n, func(i int) error {
		e := record("sign-in-failures", "alice", fmt.Sprintf("%d", i+1), time.Minute)
		e.Version = 1
		_, err := s.UpdateEphemeral(ctx, e, t0)
		return err
	})
	winner := exactlyOne(t, "update", errs, store.ErrConflict)
	got, err := s.GetEphemeral(ctx, "sign-in-failures", "alice", t0)
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	want := storedRecord(record("sign-in-failures", "alice", fmt.Sprintf("%d", winner+1), time.Minute), 2)
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("record after concurrent updates (-want +got):\n%s", diff)
	}
}

func testTakeEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(ctx, t, s, record("auth-code", "live", "grant", time.Minute), t0)
	mustPut(ctx, t, s, record("auth-code", "stale", "grant", time.Minute), t0)
	updated := record("auth-code", "updated", "grant", time.Minute)
	mustPut(ctx, t, s, updated, t0)
	updated.Version, updated.Value = 1, []byte("grant-2")
	if _, err := s.UpdateEphemeral(ctx, updated, t0); err != nil {
		t.Fatalf("UpdateEphemeral: %v", err)
	}

	// Applied in order. Each step then reads the key at t0, before any
	// expiry, to see whether the record is still stored.
	steps := []struct {
		name    string
		key     string
		now     time.Time
		want    store.Ephemeral
		wantErr error
	}{
		{"unexpired", "live", at(time.Minute - time.Microsecond), storedRecord(record("auth-code", "live", "grant", time.Minute), 1), nil},
		{"taken already", "live", t0, store.Ephemeral{}, store.ErrNotFound},
		{"updated, with its version", "updated", t0, storedRecord(record("auth-code", "updated", "grant-2", time.Minute), 2), nil},
		{"expired, deleted all the same", "stale", at(time.Minute), store.Ephemeral{}, store.ErrNotFound},
		{"never put", "none", t0, store.Ephemeral{}, store.ErrNotFound},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.TakeEphemeral(t.Context(), "auth-code", tt.key, tt.now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("TakeEphemeral = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("TakeEphemeral mismatch (-want +got):\n%s", diff)
			}
			if _, err := s.GetEphemeral(t.Context(), "auth-code", tt.key, t0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetEphemeral after the take = %v, want %v", err, store.ErrNotFound)
			}
		})
	}
}

func testTakeEphemeralConcurrent(t *testing.T, s store.Store) {
	const n = 20
	ctx := t.Context()
	e := record("auth-code", "ABCD", "grant", time.Minute)
	mustPut(ctx, t, s, e, t0)
	taken := make([]store.Ephemeral, n) // taken[i] is written by goroutine i only
	errs := race(n, func(i int) error {
		var err error
		taken[i], err = s.TakeEphemeral(ctx, "auth-code", "ABCD", t0)
		return err
	})
	winner := exactlyOne(t, "take", errs, store.ErrNotFound)
	if diff := cmp.Diff(storedRecord(e, 1), taken[winner], opts); diff != "" {
		t.Errorf("the winner's record (-want +got):\n%s", diff)
	}
}

func testDeleteEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustPut(ctx, t, s, record("device-code", "live", "v", time.Minute), t0)
	mustPut(ctx, t, s, record("device-code", "stale", "v", time.Minute), t0)
	mustPut(ctx, t, s, record("auth-code", "live", "v", time.Minute), t0)
	tests := []struct {
		name      string
		kind, key string
	}{
		{"unexpired", "device-code", "live"},
		{"expired, or not", "device-code", "stale"},
		{"again", "device-code", "live"},
		{"never put", "device-code", "none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.DeleteEphemeral(t.Context(), tt.kind, tt.key); err != nil {
				t.Fatalf("DeleteEphemeral: %v", err)
			}
			if _, err := s.GetEphemeral(t.Context(), tt.kind, tt.key, t0); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("GetEphemeral after delete = %v, want %v", err, store.ErrNotFound)
			}
		})
	}
	// The same key of another kind stays.
	got, err := s.GetEphemeral(ctx, "auth-code", "live", t0)
	if err != nil {
		t.Fatalf("GetEphemeral of another kind: %v", err)
	}
	if diff := cmp.Diff(storedRecord(record("auth-code", "live", "v", time.Minute), 1), got, opts); diff != "" {
		t.Errorf("record of another kind (-want +got):\n%s", diff)
	}
}

func testCountEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, e := range []store.Ephemeral{
		record("device-code", "a", "v", time.Minute),
		record("device-code", "b", "v", 2*time.Minute),
		record("device-code", "c", "v", 3*time.Minute),
		record("auth-code", "a", "v", time.Hour),
		// A kind that another prefixes.
		record("device-code-2", "a", "v", time.Hour),
	} {
		mustPut(ctx, t, s, e, t0)
	}
	tests := []struct {
		name string
		kind string
		now  time.Time
		want int
	}{
		{"all of a kind", "device-code", t0, 3},
		{"just before an expiry", "device-code", at(time.Minute - time.Microsecond), 3},
		{"at an expiry", "device-code", at(time.Minute), 2},
		{"after two expiries", "device-code", at(2*time.Minute + time.Second), 1},
		{"after every expiry", "device-code", at(3 * time.Minute), 0},
		{"another kind", "auth-code", at(3 * time.Minute), 1},
		{"unknown kind", "sign-in-failures", t0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CountEphemeral(t.Context(), tt.kind, tt.now)
			if err != nil {
				t.Fatalf("CountEphemeral: %v", err)
			}
			if got != tt.want {
				t.Errorf("CountEphemeral(%s, %v) = %d, want %d", tt.kind, tt.now, got, tt.want)
			}
		})
	}
}

func testPurgeEphemeral(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, e := range []store.Ephemeral{
		record("device-code", "a", "v", time.Minute),
		record("device-code", "b", "v", 2*time.Minute),
		record("auth-code", "a", "v", time.Minute),
		record("auth-code", "b", "v", 3*time.Minute),
	} {
		mustPut(ctx, t, s, e, t0)
	}

	// Applied in order. Each step then counts what is stored, expired or
	// not, by counting at t0.
	steps := []struct {
		name      string
		now       time.Time
		want      int
		wantKinds map[string]int
	}{
		{"nothing expired", at(time.Minute - time.Microsecond), 0, map[string]int{"device-code": 2, "auth-code": 2}},
		{"two expire exactly now", at(time.Minute), 2, map[string]int{"device-code": 1, "auth-code": 1}},
		{"again", at(time.Minute), 0, map[string]int{"device-code": 1, "auth-code": 1}},
		{"the rest", at(time.Hour), 2, map[string]int{"device-code": 0, "auth-code": 0}},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.PurgeEphemeral(t.Context(), tt.now)
			if err != nil {
				t.Fatalf("PurgeEphemeral: %v", err)
			}
			if got != tt.want {
				t.Errorf("PurgeEphemeral = %d, want %d", got, tt.want)
			}
			left := make(map[string]int)
			for kind := range tt.wantKinds {
				if left[kind], err = s.CountEphemeral(t.Context(), kind, t0); err != nil {
					t.Fatalf("CountEphemeral: %v", err)
				}
			}
			if diff := cmp.Diff(tt.wantKinds, left); diff != "" {
				t.Errorf("records left (-want +got):\n%s", diff)
			}
		})
	}
}

// testEphemeralNoAlias checks that values go in and come out as copies.
func testEphemeralNoAlias(t *testing.T, s store.Store) {
	ctx := t.Context()
	value := []byte("original")
	e := store.Ephemeral{Kind: "state", Key: "k", Value: value, ExpiresAt: at(time.Minute)}
	mustPut(ctx, t, s, e, t0)
	copy(value, "changed!")

	got, err := s.GetEphemeral(ctx, "state", "k", t0)
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	if string(got.Value) != "original" {
		t.Errorf("value after the caller changed its slice = %q, want %q", got.Value, "original")
	}
	copy(got.Value, "changed!")

	update := store.Ephemeral{Kind: "state", Key: "k", Value: []byte("updated"), Version: 1, ExpiresAt: at(time.Minute)}
	returned, err := s.UpdateEphemeral(ctx, update, t0)
	if err != nil {
		t.Fatalf("UpdateEphemeral: %v", err)
	}
	copy(update.Value, "XXXXXXX")
	copy(returned.Value, "YYYYYYY")

	got, err = s.GetEphemeral(ctx, "state", "k", t0)
	if err != nil {
		t.Fatalf("GetEphemeral: %v", err)
	}
	if string(got.Value) != "updated" {
		t.Errorf("value after the caller changed the slices it passed and got = %q, want %q", got.Value, "updated")
	}
	taken, err := s.TakeEphemeral(ctx, "state", "k", t0)
	if err != nil {
		t.Fatalf("TakeEphemeral: %v", err)
	}
	if string(taken.Value) != "updated" {
		t.Errorf("taken value = %q, want %q", taken.Value, "updated")
	}
}
