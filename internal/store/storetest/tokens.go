package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

func testCreateJoinToken(t *testing.T, s store.Store) {
	web := mustCreate(t.Context(), t, s, "prod", "web")
	api := mustCreate(t.Context(), t, s, "prod", "api")
	token := func(secret, id string, created, expires time.Time) store.JoinToken {
		return store.JoinToken{Hash: hashOf(secret), ClusterID: id, CreatedAt: created, ExpiresAt: expires}
	}

	// Applied in order.
	tests := []struct {
		name    string
		tok     store.JoinToken
		wantErr error
	}{
		{"valid", token("one", web.ID, t0, at(time.Hour)), nil},
		{"second token for the cluster", token("two", web.ID, t0, at(time.Hour)), nil},
		{"expiring a microsecond after creation", token("short", web.ID, t0, at(time.Microsecond)), nil},
		{"same hash", token("one", web.ID, at(time.Minute), at(2*time.Hour)), store.ErrConflict},
		{"same hash for another cluster", token("one", api.ID, t0, at(time.Hour)), store.ErrConflict},
		{"unknown cluster", token("three", "/groups/prod/clusters/db", t0, at(time.Hour)), store.ErrNotFound},
		{"malformed cluster ID", token("three", "prod/web", t0, at(time.Hour)), store.ErrInvalid},
		{"zero hash", store.JoinToken{ClusterID: web.ID, CreatedAt: t0, ExpiresAt: at(time.Hour)}, store.ErrInvalid},
		{"zero creation time", token("three", web.ID, time.Time{}, at(time.Hour)), store.ErrInvalid},
		{"zero expiry", token("three", web.ID, t0, time.Time{}), store.ErrInvalid},
		{"expiry at creation", token("three", web.ID, t0, t0), store.ErrInvalid},
		{"expiry before creation", token("three", web.ID, t0, at(-time.Hour)), store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateJoinToken(t.Context(), tt.tok); !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateJoinToken = %v, want %v", err, tt.wantErr)
			}
		})
	}
	// The refused token was never stored.
	if _, err := s.RedeemJoinToken(t.Context(), hashOf("three"), at(time.Minute), []byte("key")); !errors.Is(err, store.ErrTokenInvalid) {
		t.Errorf("RedeemJoinToken(refused token) = %v, want %v", err, store.ErrTokenInvalid)
	}
}

func testRedeemJoinToken(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	api := mustCreate(ctx, t, s, "prod", "api")
	hash := mustCreateToken(ctx, t, s, web.ID, "web-token")

	// A microsecond before the expiry is still in time.
	now := at(time.Hour - time.Microsecond)
	key := []byte("public key")
	got, err := s.RedeemJoinToken(ctx, hash, now, key)
	if err != nil {
		t.Fatalf("RedeemJoinToken: %v", err)
	}
	want := created("prod", "web")
	want.Agent = store.Agent{PublicKey: []byte("public key"), EnrolledAt: stored(now)}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("RedeemJoinToken mismatch (-want +got):\n%s", diff)
	}

	// The store keeps its own copy of the key.
	key[0] = 'X'
	got.Agent.PublicKey[0] = 'Y'
	if diff := cmp.Diff(want, mustGet(ctx, t, s, web.ID), opts); diff != "" {
		t.Errorf("GetCluster after redemption (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(api, mustGet(ctx, t, s, api.ID), opts); diff != "" {
		t.Errorf("another cluster changed (-want +got):\n%s", diff)
	}
}

func testRedeemJoinTokenErrors(t *testing.T, s store.Store) {
	first := store.Agent{PublicKey: []byte("first"), EnrolledAt: stored(at(time.Minute))}
	tests := []struct {
		name    string
		cluster string // created with a token whose secret is its name, expiring at t0+1h
		prior   []time.Duration
		secret  string // of the token to redeem
		now     time.Time
		key     []byte
		wantErr error
		want    store.Agent // the cluster's agent afterwards
	}{
		{name: "unknown token", cluster: "unknown", secret: "nope", now: at(time.Minute), key: []byte("k"), wantErr: store.ErrTokenInvalid},
		{name: "expired at expiry", cluster: "expiry", secret: "expiry", now: at(time.Hour), key: []byte("k"), wantErr: store.ErrTokenExpired},
		{name: "expired after expiry", cluster: "late", secret: "late", now: at(2 * time.Hour), key: []byte("k"), wantErr: store.ErrTokenExpired},
		{name: "used", cluster: "used", prior: []time.Duration{time.Minute}, secret: "used", now: at(2 * time.Minute), key: []byte("k"), wantErr: store.ErrTokenUsed, want: first},
		{name: "used and expired", cluster: "used-expired", prior: []time.Duration{time.Minute}, secret: "used-expired", now: at(2 * time.Hour), key: []byte("k"), wantErr: store.ErrTokenUsed, want: first},
		{name: "empty key", cluster: "empty-key", secret: "empty-key", now: at(time.Minute), key: nil, wantErr: store.ErrInvalid},
		{name: "key too long", cluster: "long-key", secret: "long-key", now: at(time.Minute), key: make([]byte, store.MaxPublicKeyLen+1), wantErr: store.ErrInvalid},
		{name: "zero time", cluster: "zero-time", secret: "zero-time", now: time.Time{}, key: []byte("k"), wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			c := mustCreate(ctx, t, s, "prod", tt.cluster)
			mustCreateToken(ctx, t, s, c.ID, tt.cluster)
			for _, d := range tt.prior {
				if _, err := s.RedeemJoinToken(ctx, hashOf(tt.cluster), at(d), []byte("first")); err != nil {
					t.Fatalf("prior RedeemJoinToken: %v", err)
				}
			}

			_, err := s.RedeemJoinToken(ctx, hashOf(tt.secret), tt.now, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("RedeemJoinToken = %v, want %v", err, tt.wantErr)
			}
			want := created("prod", tt.cluster)
			want.Agent = tt.want
			if diff := cmp.Diff(want, mustGet(ctx, t, s, c.ID), opts); diff != "" {
				t.Errorf("cluster after failed redemption (-want +got):\n%s", diff)
			}
		})
	}

	// A redemption refused for its arguments left the token unused.
	for _, name := range []string{"empty-key", "long-key", "zero-time"} {
		if _, err := s.RedeemJoinToken(t.Context(), hashOf(name), at(time.Minute), []byte("k")); err != nil {
			t.Errorf("RedeemJoinToken(%s) after an invalid call: %v", name, err)
		}
	}
}

func testRedeemJoinTokenConcurrent(t *testing.T, s store.Store) {
	const n = 20
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	hash := mustCreateToken(ctx, t, s, web.ID, "web-token")

	errs := race(n, func(i int) error {
		_, err := s.RedeemJoinToken(ctx, hash, at(time.Minute), fmt.Appendf(nil, "key-%d", i))
		return err
	})
	winner := exactlyOne(t, "redemption", errs, store.ErrTokenUsed)
	want := created("prod", "web")
	want.Agent = store.Agent{PublicKey: fmt.Appendf(nil, "key-%d", winner), EnrolledAt: stored(at(time.Minute))}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, web.ID), opts); diff != "" {
		t.Errorf("cluster after concurrent redemptions (-want +got):\n%s", diff)
	}
}

// testReenroll pins the token policy: issuing a token leaves the cluster's
// older unused tokens valid, and each enrollment replaces the key.
func testReenroll(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	mustCreateToken(ctx, t, s, web.ID, "older")
	mustCreateToken(ctx, t, s, web.ID, "newer")

	// Applied in order.
	steps := []struct {
		name   string
		secret string
		now    time.Time
		key    string
	}{
		{"newer token enrolls", "newer", at(time.Minute), "key-1"},
		{"older token still enrolls, replacing the key", "older", at(2 * time.Minute), "key-2"},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.RedeemJoinToken(t.Context(), hashOf(tt.secret), tt.now, []byte(tt.key))
			if err != nil {
				t.Fatalf("RedeemJoinToken: %v", err)
			}
			want := created("prod", "web")
			want.Agent = store.Agent{PublicKey: []byte(tt.key), EnrolledAt: stored(tt.now)}
			if diff := cmp.Diff(want, got, opts); diff != "" {
				t.Errorf("RedeemJoinToken mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
				t.Errorf("GetCluster mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
