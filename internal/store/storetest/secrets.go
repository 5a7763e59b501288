package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

func testCreateClientSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	bot := mustCreatePrincipal(ctx, t, s, newSP(1, "deploy-bot")).ID
	other := mustCreatePrincipal(ctx, t, s, newSP(2, "backup-bot")).ID
	alice := mustCreatePrincipal(ctx, t, s, newUser(3, "Alice", "alice@example.com")).ID
	devs := mustCreatePrincipal(ctx, t, s, newGroup(4, "devs")).ID
	with := func(f func(sec *store.ClientSecret)) store.ClientSecret {
		sec := newSecret(50, bot, "never stored", 0, time.Hour)
		f(&sec)
		return sec
	}

	// Applied in order.
	tests := []struct {
		name    string
		in      store.ClientSecret
		wantErr error
	}{
		{"valid", newSecret(1, bot, "ci", 0, time.Hour), nil},
		{"second secret", newSecret(2, bot, "ci-rotated", time.Minute, 90*24*time.Hour), nil},
		{"expiring a microsecond after creation", newSecret(3, bot, "short", 0, time.Microsecond), nil},
		{"empty description", newSecret(4, other, "", 0, time.Hour), nil},
		{"longest description", newSecret(5, other, strings.Repeat("d", store.MaxDescriptionLen), 0, time.Hour), nil},
		{"same ID", newSecret(1, bot, "again", 0, time.Hour), store.ErrConflict},
		{"same ID for another service principal", newSecret(1, other, "again", 0, time.Hour), store.ErrConflict},
		{"for a user", newSecret(6, alice, "user", 0, time.Hour), store.ErrInvalid},
		{"for a group", newSecret(7, devs, "group", 0, time.Hour), store.ErrInvalid},
		{"for an unknown principal", newSecret(8, pid(99), "unknown", 0, time.Hour), store.ErrNotFound},
		{"malformed ID", with(func(sec *store.ClientSecret) { sec.ID = "ci" }), store.ErrInvalid},
		{"uppercase ID", with(func(sec *store.ClientSecret) { sec.ID = strings.ToUpper(uuid(0xa, 1)) }), store.ErrInvalid},
		{"malformed principal ID", with(func(sec *store.ClientSecret) { sec.PrincipalID = "deploy-bot" }), store.ErrInvalid},
		{"client ID for the principal ID", with(func(sec *store.ClientSecret) { sec.PrincipalID = cid(1) }), store.ErrNotFound},
		{"zero hash", with(func(sec *store.ClientSecret) { sec.Hash = store.SecretHash{} }), store.ErrInvalid},
		{"description with a newline", with(func(sec *store.ClientSecret) { sec.Description = "a\nb" }), store.ErrInvalid},
		{"description too long", with(func(sec *store.ClientSecret) { sec.Description = strings.Repeat("d", store.MaxDescriptionLen+1) }), store.ErrInvalid},
		{"zero creation time", with(func(sec *store.ClientSecret) { sec.CreatedAt = time.Time{} }), store.ErrInvalid},
		{"zero expiry", with(func(sec *store.ClientSecret) { sec.ExpiresAt = time.Time{} }), store.ErrInvalid},
		{"expiry at creation", with(func(sec *store.ClientSecret) { sec.ExpiresAt = sec.CreatedAt }), store.ErrInvalid},
		{"expiry before creation", with(func(sec *store.ClientSecret) { sec.ExpiresAt = at(-time.Hour) }), store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateClientSecret(t.Context(), tt.in); !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateClientSecret = %v, want %v", err, tt.wantErr)
			}
		})
	}

	// Only the valid secrets were stored, and a conflicting one changed
	// nothing.
	want := directory{
		Principals: []string{alice, other, bot, devs},
		Secrets:    map[string][]string{bot: {sid(1), sid(3), sid(2)}, other: {sid(4), sid(5)}},
	}
	if diff := cmp.Diff(want, readDirectory(t, s), opts); diff != "" {
		t.Errorf("directory afterwards (-want +got):\n%s", diff)
	}
	_, got, err := s.FindClientSecrets(ctx, cid(1), t0)
	if err != nil {
		t.Fatalf("FindClientSecrets: %v", err)
	}
	wantSecrets := []store.ClientSecret{
		storedSecret(newSecret(1, bot, "ci", 0, time.Hour)),
		storedSecret(newSecret(3, bot, "short", 0, time.Microsecond)),
		storedSecret(newSecret(2, bot, "ci-rotated", time.Minute, 90*24*time.Hour)),
	}
	if diff := cmp.Diff(wantSecrets, got, opts); diff != "" {
		t.Errorf("FindClientSecrets afterwards (-want +got):\n%s", diff)
	}
}

func testListClientSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	bot := mustCreatePrincipal(ctx, t, s, newSP(1, "deploy-bot")).ID
	idle := mustCreatePrincipal(ctx, t, s, newSP(2, "idle-bot")).ID
	alice := mustCreatePrincipal(ctx, t, s, newUser(3, "Alice", "alice@example.com")).ID
	// Created out of order; sorted by creation time, then ID.
	secrets := []store.ClientSecret{
		newSecret(5, bot, "newest", 2*time.Hour, 3*time.Hour),
		newSecret(2, bot, "expired", -2*time.Hour, -time.Hour),
		newSecret(4, bot, "same time, higher ID", 0, time.Hour),
		newSecret(3, bot, "same time, lower ID", 0, 2*time.Hour),
	}
	for _, sec := range secrets {
		mustCreateSecret(ctx, t, s, sec)
	}
	tests := []struct {
		name    string
		id      string
		want    []store.ClientSecret
		wantErr error
	}{
		{
			name: "without hashes, expired included",
			id:   bot,
			want: []store.ClientSecret{listedSecret(secrets[1]), listedSecret(secrets[3]), listedSecret(secrets[2]), listedSecret(secrets[0])},
		},
		{name: "none", id: idle, want: nil},
		{name: "user", id: alice, wantErr: store.ErrInvalid},
		{name: "unknown", id: pid(99), wantErr: store.ErrNotFound},
		{name: "client ID", id: cid(1), wantErr: store.ErrNotFound},
		{name: "malformed", id: "deploy-bot", wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListClientSecrets(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListClientSecrets = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListClientSecrets mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testDeleteClientSecret(t *testing.T, s store.Store) {
	ctx := t.Context()
	bot := mustCreatePrincipal(ctx, t, s, newSP(1, "deploy-bot")).ID
	other := mustCreatePrincipal(ctx, t, s, newSP(2, "other-bot")).ID
	mustCreateSecret(ctx, t, s, newSecret(1, bot, "one", 0, time.Hour))
	mustCreateSecret(ctx, t, s, newSecret(2, bot, "two", time.Minute, time.Hour))
	mustCreateSecret(ctx, t, s, newSecret(3, other, "three", 0, time.Hour))

	// Applied in order.
	tests := []struct {
		name      string
		principal string
		secret    string
		wantErr   error
		want      map[string][]string // secret IDs afterwards
	}{
		{"through another principal", other, sid(1), store.ErrNotFound, map[string][]string{bot: {sid(1), sid(2)}, other: {sid(3)}}},
		{"first", bot, sid(1), nil, map[string][]string{bot: {sid(2)}, other: {sid(3)}}},
		{"first again", bot, sid(1), store.ErrNotFound, map[string][]string{bot: {sid(2)}, other: {sid(3)}}},
		{"unknown principal", pid(99), sid(2), store.ErrNotFound, map[string][]string{bot: {sid(2)}, other: {sid(3)}}},
		{"malformed secret ID", bot, "two", store.ErrInvalid, map[string][]string{bot: {sid(2)}, other: {sid(3)}}},
		{"malformed principal ID", "deploy-bot", sid(2), store.ErrInvalid, map[string][]string{bot: {sid(2)}, other: {sid(3)}}},
		{"second", bot, sid(2), nil, map[string][]string{other: {sid(3)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.DeleteClientSecret(t.Context(), tt.principal, tt.secret); !errors.Is(err, tt.wantErr) {
				t.Errorf("DeleteClientSecret = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, readDirectory(t, s).Secrets, opts); diff != "" {
				t.Errorf("secrets afterwards (-want +got):\n%s", diff)
			}
		})
	}
	// The deleted secret no longer signs in.
	if _, got, err := s.FindClientSecrets(ctx, cid(1), t0); err != nil || len(got) != 0 {
		t.Errorf("FindClientSecrets after deleting every secret = %v, %v; want none", got, err)
	}
}

func testFindClientSecrets(t *testing.T, s store.Store) {
	ctx := t.Context()
	bot := mustCreatePrincipal(ctx, t, s, newSP(1, "deploy-bot"))
	mustCreatePrincipal(ctx, t, s, newSP(2, "other-bot"))
	mustCreatePrincipal(ctx, t, s, newUser(3, "Alice", "alice@example.com"))
	var (
		old   = newSecret(1, bot.ID, "old", -time.Hour, time.Minute)
		hour  = newSecret(2, bot.ID, "hour", 0, time.Hour)
		later = newSecret(3, bot.ID, "later", time.Second, 2*time.Hour)
	)
	for _, sec := range []store.ClientSecret{later, hour, old, newSecret(4, pid(2), "other's", 0, time.Hour)} {
		mustCreateSecret(ctx, t, s, sec)
	}
	tests := []struct {
		name     string
		clientID string
		now      time.Time
		wantSP   store.Principal
		want     []store.ClientSecret
		wantErr  error
	}{
		{name: "all valid", clientID: cid(1), now: t0, wantSP: bot, want: []store.ClientSecret{storedSecret(old), storedSecret(hour), storedSecret(later)}},
		{name: "a microsecond before an expiry", clientID: cid(1), now: at(time.Minute - time.Microsecond), wantSP: bot, want: []store.ClientSecret{storedSecret(old), storedSecret(hour), storedSecret(later)}},
		{name: "at an expiry", clientID: cid(1), now: at(time.Minute), wantSP: bot, want: []store.ClientSecret{storedSecret(hour), storedSecret(later)}},
		{name: "after two expiries", clientID: cid(1), now: at(90 * time.Minute), wantSP: bot, want: []store.ClientSecret{storedSecret(later)}},
		{name: "all expired", clientID: cid(1), now: at(3 * time.Hour), wantSP: bot, want: nil},
		{name: "without secrets", clientID: cid(2), now: at(2 * time.Hour), wantSP: listed(newSP(2, "other-bot")), want: nil},
		{name: "unknown client ID", clientID: cid(3), now: t0, wantErr: store.ErrNotFound},
		{name: "object ID", clientID: bot.ID, now: t0, wantErr: store.ErrNotFound},
		{name: "malformed client ID", clientID: "deploy-bot", now: t0, wantErr: store.ErrInvalid},
		{name: "zero time", clientID: cid(1), now: time.Time{}, wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp, got, err := s.FindClientSecrets(t.Context(), tt.clientID, tt.now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("FindClientSecrets = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantSP, sp, opts); diff != "" {
				t.Errorf("FindClientSecrets principal mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("FindClientSecrets secrets mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
