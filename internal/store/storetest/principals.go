package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

func testCreatePrincipal(t *testing.T, s store.Store) {
	longName := strings.Repeat("n", store.MaxDisplayNameLen)
	longLogin := strings.Repeat("l", store.MaxLoginNameLen-len("@example.com")) + "@example.com"
	tests := []struct {
		name string
		in   store.Principal
	}{
		{"user with a password", withPassword(newUser(1, "Alice", "alice@example.com"), "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA")},
		{"user without a password", newUser(2, "Bob", "bob@example.com")},
		{"user with an empty password hash", withPassword(newUser(3, "Carol", "carol@example.com"), "")},
		{"non-ASCII login and display name", newUser(4, "Jürgen Groß", "jürgen@bücher.example")},
		{"login name that is no e-mail address", newUser(5, "Dave", "dave")},
		{"service principal", newSP(6, "deploy-bot")},
		{"group", newGroup(7, "Platform engineers (EU)")},
		{"longest display name and login name", store.Principal{ID: pid(8), Type: access.PrincipalUser, DisplayName: longName, LoginName: longLogin, CreatedAt: t0}},
		{"another time", store.Principal{ID: pid(9), Type: access.PrincipalGroup, DisplayName: "Later", CreatedAt: at(time.Hour + time.Nanosecond)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreatePrincipal(t.Context(), tt.in); err != nil {
				t.Fatalf("CreatePrincipal: %v", err)
			}
			got, err := s.GetPrincipal(t.Context(), tt.in.ID)
			if err != nil {
				t.Fatalf("GetPrincipal: %v", err)
			}
			if diff := cmp.Diff(listed(tt.in), got, opts); diff != "" {
				t.Errorf("GetPrincipal mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testCreatePrincipalInvalid(t *testing.T, s store.Store) {
	user := func(f func(p *store.Principal)) store.Principal {
		p := newUser(1, "Alice", "alice@example.com")
		f(&p)
		return p
	}
	sp := func(f func(p *store.Principal)) store.Principal {
		p := newSP(2, "deploy-bot")
		f(&p)
		return p
	}
	group := func(f func(p *store.Principal)) store.Principal {
		p := newGroup(3, "devs")
		f(&p)
		return p
	}
	tests := []struct {
		name string
		in   store.Principal
	}{
		{"empty ID", user(func(p *store.Principal) { p.ID = "" })},
		{"uppercase ID", user(func(p *store.Principal) { p.ID = strings.ToUpper(pid(0xabc)) })},
		{"nil UUID", user(func(p *store.Principal) { p.ID = "00000000-0000-0000-0000-000000000000" })},
		{"ID in braces", user(func(p *store.Principal) { p.ID = "{" + pid(1) + "}" })},
		{"login name as ID", user(func(p *store.Principal) { p.ID = "alice@example.com" })},
		{"empty type", user(func(p *store.Principal) { p.Type = "" })},
		{"unknown type", user(func(p *store.Principal) { p.Type = "application" })},
		{"empty display name", user(func(p *store.Principal) { p.DisplayName = "" })},
		{"display name with a newline", user(func(p *store.Principal) { p.DisplayName = "Alice\nAdmin" })},
		{"display name with a trailing space", user(func(p *store.Principal) { p.DisplayName = "Alice " })},
		{"display name too long", user(func(p *store.Principal) { p.DisplayName = strings.Repeat("n", store.MaxDisplayNameLen+1) })},
		{"display name not UTF-8", user(func(p *store.Principal) { p.DisplayName = "Al\xffce" })},
		{"user without a login name", user(func(p *store.Principal) { p.LoginName = "" })},
		{"login name with a space", user(func(p *store.Principal) { p.LoginName = "alice smith@example.com" })},
		{"login name with a tab", user(func(p *store.Principal) { p.LoginName = "alice\t@example.com" })},
		{"login name with a zero-width space", user(func(p *store.Principal) { p.LoginName = "alice\u200b@example.com" })},
		{"login name too long", user(func(p *store.Principal) { p.LoginName = strings.Repeat("l", store.MaxLoginNameLen+1) })},
		{"login name not UTF-8", user(func(p *store.Principal) { p.LoginName = "al\xffce@example.com" })},
		{"user with a client ID", user(func(p *store.Principal) { p.ClientID = cid(1) })},
		{"password hash too long", user(func(p *store.Principal) { p.PasswordHash = make([]byte, store.MaxPasswordHashLen+1) })},
		{"service principal without a client ID", sp(func(p *store.Principal) { p.ClientID = "" })},
		{"uppercase client ID", sp(func(p *store.Principal) { p.ClientID = strings.ToUpper(cid(0xabc)) })},
		{"malformed client ID", sp(func(p *store.Principal) { p.ClientID = "deploy-bot" })},
		{"service principal with a login name", sp(func(p *store.Principal) { p.LoginName = "bot@example.com" })},
		{"service principal with a password", sp(func(p *store.Principal) { p.PasswordHash = []byte("hash") })},
		{"group with a login name", group(func(p *store.Principal) { p.LoginName = "devs@example.com" })},
		{"group with a client ID", group(func(p *store.Principal) { p.ClientID = cid(3) })},
		{"group with a password", group(func(p *store.Principal) { p.PasswordHash = []byte("hash") })},
		{"zero creation time", group(func(p *store.Principal) { p.CreatedAt = time.Time{} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreatePrincipal(t.Context(), tt.in); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreatePrincipal(%+v) = %v, want %v", tt.in, err, store.ErrInvalid)
			}
		})
	}
	got, err := s.ListPrincipals(t.Context(), store.PrincipalFilter{})
	if err != nil {
		t.Fatalf("ListPrincipals: %v", err)
	}
	if diff := cmp.Diff([]store.Principal(nil), got, opts); diff != "" {
		t.Errorf("ListPrincipals after invalid creates (-want +got):\n%s", diff)
	}
}

func testCreatePrincipalConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustCreatePrincipal(ctx, t, s, withPassword(newUser(1, "Alice", "Alice@Example.com"), "alice-hash"))
	bot := mustCreatePrincipal(ctx, t, s, newSP(2, "deploy-bot"))
	devs := mustCreatePrincipal(ctx, t, s, newGroup(3, "devs"))
	originals := []store.Principal{alice, bot, devs}

	// Applied in order.
	tests := []struct {
		name    string
		in      store.Principal
		wantErr error
	}{
		{"user's ID for a group", newGroup(1, "other"), store.ErrConflict},
		{"group's ID for a user", newUser(3, "other", "other@example.com"), store.ErrConflict},
		{"service principal's ID for a service principal", store.Principal{ID: pid(2), Type: access.PrincipalServicePrincipal, DisplayName: "b", ClientID: cid(99), CreatedAt: t0}, store.ErrConflict},
		{"same login name", newUser(10, "Alice 2", "Alice@Example.com"), store.ErrConflict},
		{"login name in lowercase", newUser(11, "Alice 3", "alice@example.com"), store.ErrConflict},
		{"login name in uppercase", newUser(12, "Alice 4", "ALICE@EXAMPLE.COM"), store.ErrConflict},
		{"another login name", newUser(13, "Alice", "alice@example.org"), nil},
		{"non-ASCII login name", newUser(14, "Jürgen", "jürgen@example.com"), nil},
		{"non-ASCII login name in uppercase", newUser(15, "Jürgen 2", "JÜRGEN@EXAMPLE.COM"), store.ErrConflict},
		{"login name with k", newUser(16, "Kim", "kim@example.com"), nil},
		{"login name with the Kelvin sign, which folds to k", newUser(17, "Kim 2", "\u212aim@example.com"), store.ErrConflict},
		{"login name with sharp s", newUser(18, "Straße", "straße@example.com"), nil},
		{"login name with capital sharp s", newUser(19, "Straße 2", "STRAẞE@example.com"), store.ErrConflict},
		{"login name with ss, which simple folding keeps apart from sharp s", newUser(20, "Strasse", "strasse@example.com"), nil},
		{"same client ID", store.Principal{ID: pid(21), Type: access.PrincipalServicePrincipal, DisplayName: "bot 2", ClientID: cid(2), CreatedAt: t0}, store.ErrConflict},
		{"a principal's object ID as client ID", store.Principal{ID: pid(22), Type: access.PrincipalServicePrincipal, DisplayName: "bot 3", ClientID: pid(1), CreatedAt: t0}, nil},
		{"same display name", newGroup(23, "devs"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreatePrincipal(t.Context(), tt.in); !errors.Is(err, tt.wantErr) {
				t.Errorf("CreatePrincipal = %v, want %v", err, tt.wantErr)
			}
		})
	}
	for _, want := range originals {
		got, err := s.GetPrincipal(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetPrincipal(%s): %v", want.DisplayName, err)
		}
		if diff := cmp.Diff(want, got, opts); diff != "" {
			t.Errorf("conflicting creates changed %s (-want +got):\n%s", want.DisplayName, diff)
		}
	}
	got, err := s.GetUserByLogin(ctx, "alice@example.com")
	if err != nil {
		t.Fatalf("GetUserByLogin: %v", err)
	}
	if diff := cmp.Diff(signIn(withPassword(newUser(1, "Alice", "Alice@Example.com"), "alice-hash")), got, opts); diff != "" {
		t.Errorf("GetUserByLogin after conflicting creates (-want +got):\n%s", diff)
	}
}

// testCreatePrincipalConcurrent races creations that conflict: exactly one
// wins.
func testCreatePrincipalConcurrent(t *testing.T, s store.Store) {
	const n = 20
	tests := []struct {
		name string
		// make returns the i-th principal; each has its own object ID.
		make  func(i int) store.Principal
		after func(t *testing.T) (store.Principal, error) // reads back the winner
	}{
		{
			name: "same login name in various cases",
			make: func(i int) store.Principal {
				return newUser(100+i, fmt.Sprintf("user %d", i), []string{"racer@example.com", "RACER@example.com", "Racer@Example.Com"}[i%3])
			},
			after: func(t *testing.T) (store.Principal, error) { return s.GetUserByLogin(t.Context(), "racer@example.com") },
		},
		{
			name: "same client ID",
			make: func(i int) store.Principal {
				return store.Principal{ID: pid(200 + i), Type: access.PrincipalServicePrincipal, DisplayName: fmt.Sprintf("bot %d", i), ClientID: cid(1), CreatedAt: t0}
			},
			after: func(t *testing.T) (store.Principal, error) {
				return s.GetServicePrincipalByClientID(t.Context(), cid(1))
			},
		},
		{
			name: "same object ID",
			make: func(i int) store.Principal {
				return newUser(300, fmt.Sprintf("user %d", i), fmt.Sprintf("user-%d@example.com", i))
			},
			after: func(t *testing.T) (store.Principal, error) { return s.GetPrincipal(t.Context(), pid(300)) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := race(n, func(i int) error { return s.CreatePrincipal(t.Context(), tt.make(i)) })
			winner := exactlyOne(t, "creation", errs, store.ErrConflict)
			got, err := tt.after(t)
			if err != nil {
				t.Fatalf("reading the winner back: %v", err)
			}
			if diff := cmp.Diff(listed(tt.make(winner)), got, opts); diff != "" {
				t.Errorf("stored principal is not the winner's (-want +got):\n%s", diff)
			}
		})
	}
}

func testGetPrincipal(t *testing.T, s store.Store) {
	mustCreatePrincipal(t.Context(), t, s, newUser(1, "Alice", "alice@example.com"))
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"unknown", pid(2), store.ErrNotFound},
		{"empty", "", store.ErrInvalid},
		{"uppercase", strings.ToUpper(uuid(0xa, 1)), store.ErrInvalid},
		{"not a UUID", "alice", store.ErrInvalid},
		{"login name", "alice@example.com", store.ErrInvalid},
		{"nil UUID", "00000000-0000-0000-0000-000000000000", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.GetPrincipal(t.Context(), tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("GetPrincipal(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
}

func testGetUserByLogin(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := withPassword(newUser(1, "Alice", "Alice@Example.com"), "alice-hash")
	bob := newUser(2, "Bob", "bob@example.com")
	jurgen := withPassword(newUser(3, "Jürgen", "jürgen@example.com"), "jurgen-hash")
	for _, p := range []store.Principal{alice, bob, jurgen, newSP(4, "bob@example.com"), newGroup(5, "carol@example.com")} {
		mustCreatePrincipal(ctx, t, s, p)
	}
	tests := []struct {
		name    string
		login   string
		want    store.Principal
		wantErr error
	}{
		{"as created", "Alice@Example.com", signIn(alice), nil},
		{"lowercase", "alice@example.com", signIn(alice), nil},
		{"uppercase", "ALICE@EXAMPLE.COM", signIn(alice), nil},
		{"without a password", "bob@example.com", signIn(bob), nil},
		{"non-ASCII in another case", "JÜRGEN@example.com", signIn(jurgen), nil},
		{"unknown", "carol@example.com", store.Principal{}, store.ErrNotFound},
		{"prefix of a login name", "alice@example", store.Principal{}, store.ErrNotFound},
		{"empty", "", store.Principal{}, store.ErrInvalid},
		{"with a space", "alice @example.com", store.Principal{}, store.ErrInvalid},
		{"too long", strings.Repeat("a", store.MaxLoginNameLen+1), store.Principal{}, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GetUserByLogin(t.Context(), tt.login)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetUserByLogin(%q) = %v, want %v", tt.login, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("GetUserByLogin(%q) mismatch (-want +got):\n%s", tt.login, diff)
			}
		})
	}

	// The returned hash is the caller's to change.
	got, err := s.GetUserByLogin(ctx, "alice@example.com")
	if err != nil {
		t.Fatalf("GetUserByLogin: %v", err)
	}
	got.PasswordHash[0] = 'X'
	if got, err = s.GetUserByLogin(ctx, "alice@example.com"); err != nil || string(got.PasswordHash) != "alice-hash" {
		t.Errorf("GetUserByLogin after changing a returned hash = %q, %v; want %q", got.PasswordHash, err, "alice-hash")
	}
}

func testGetServicePrincipalByClientID(t *testing.T, s store.Store) {
	ctx := t.Context()
	bot := mustCreatePrincipal(ctx, t, s, newSP(1, "deploy-bot"))
	other := mustCreatePrincipal(ctx, t, s, newSP(2, "backup-bot"))
	mustCreatePrincipal(ctx, t, s, newUser(3, "Alice", "alice@example.com"))
	tests := []struct {
		name     string
		clientID string
		want     store.Principal
		wantErr  error
	}{
		{"first", cid(1), bot, nil},
		{"second", cid(2), other, nil},
		{"unknown", cid(3), store.Principal{}, store.ErrNotFound},
		{"object ID", pid(1), store.Principal{}, store.ErrNotFound},
		{"uppercase", strings.ToUpper(cid(0xa)), store.Principal{}, store.ErrInvalid},
		{"empty", "", store.Principal{}, store.ErrInvalid},
		{"name", "deploy-bot", store.Principal{}, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.GetServicePrincipalByClientID(t.Context(), tt.clientID)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("GetServicePrincipalByClientID(%q) = %v, want %v", tt.clientID, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("GetServicePrincipalByClientID(%q) mismatch (-want +got):\n%s", tt.clientID, diff)
			}
		})
	}
}

func testListPrincipals(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Created out of order. Byte-wise, uppercase sorts before lowercase and
	// ASCII before the rest; equal names sort by ID.
	var (
		alice2 = mustCreatePrincipal(ctx, t, s, withPassword(newUser(9, "alice", "alice2@example.com"), "hash"))
		zed    = mustCreatePrincipal(ctx, t, s, newUser(2, "Zed", "zed@example.com"))
		bot    = mustCreatePrincipal(ctx, t, s, newSP(3, "bot"))
		alice1 = mustCreatePrincipal(ctx, t, s, withPassword(newUser(4, "alice", "alice@example.com"), "hash"))
		arger  = mustCreatePrincipal(ctx, t, s, newGroup(5, "Ärger"))
		admins = mustCreatePrincipal(ctx, t, s, newGroup(6, "Admins"))
		bob    = mustCreatePrincipal(ctx, t, s, newUser(7, "Bob", "bob@example.com"))
		agent  = mustCreatePrincipal(ctx, t, s, newSP(8, "agent-1"))
	)
	tests := []struct {
		name    string
		filter  store.PrincipalFilter
		want    []store.Principal
		wantErr error
	}{
		{"all", store.PrincipalFilter{}, []store.Principal{admins, bob, zed, agent, alice1, alice2, bot, arger}, nil},
		{"users", store.PrincipalFilter{Type: access.PrincipalUser}, []store.Principal{bob, zed, alice1, alice2}, nil},
		{"service principals", store.PrincipalFilter{Type: access.PrincipalServicePrincipal}, []store.Principal{agent, bot}, nil},
		{"groups", store.PrincipalFilter{Type: access.PrincipalGroup}, []store.Principal{admins, arger}, nil},
		{"unknown type", store.PrincipalFilter{Type: "application"}, nil, store.ErrInvalid},
		{"type in another case", store.PrincipalFilter{Type: "User"}, nil, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListPrincipals(t.Context(), tt.filter)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListPrincipals(%+v) = %v, want %v", tt.filter, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListPrincipals(%+v) mismatch (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
}

func testSetDisplayName(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustCreatePrincipal(ctx, t, s, withPassword(newUser(1, "Alice", "alice@example.com"), "hash"))
	devs := mustCreatePrincipal(ctx, t, s, newGroup(2, "devs"))
	renamed := func(p store.Principal, name string) store.Principal {
		p.DisplayName = name
		return p
	}

	// Applied in order.
	tests := []struct {
		name    string
		id      string
		to      string
		wantErr error
		want    []store.Principal // all principals afterwards
	}{
		{"user", alice.ID, "Alice Smith", nil, []store.Principal{renamed(alice, "Alice Smith"), devs}},
		{"group", devs.ID, "Developers", nil, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
		{"same name again", devs.ID, "Developers", nil, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
		{"unknown", pid(3), "Carol", store.ErrNotFound, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
		{"empty name", alice.ID, "", store.ErrInvalid, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
		{"name with a newline", alice.ID, "a\nb", store.ErrInvalid, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
		{"malformed ID", "alice", "Alice", store.ErrInvalid, []store.Principal{renamed(alice, "Alice Smith"), renamed(devs, "Developers")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetDisplayName(t.Context(), tt.id, tt.to); !errors.Is(err, tt.wantErr) {
				t.Errorf("SetDisplayName(%q) = %v, want %v", tt.to, err, tt.wantErr)
			}
			got, err := s.ListPrincipals(t.Context(), store.PrincipalFilter{})
			if err != nil {
				t.Fatalf("ListPrincipals: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("principals afterwards (-want +got):\n%s", diff)
			}
		})
	}
	// Renaming kept the password.
	got, err := s.GetUserByLogin(ctx, "alice@example.com")
	if err != nil {
		t.Fatalf("GetUserByLogin: %v", err)
	}
	if string(got.PasswordHash) != "hash" {
		t.Errorf("password hash after renaming = %q, want %q", got.PasswordHash, "hash")
	}
}

func testSetPasswordHash(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := newUser(1, "Alice", "alice@example.com")
	mustCreatePrincipal(ctx, t, s, alice)
	bot := mustCreatePrincipal(ctx, t, s, newSP(2, "bot"))
	devs := mustCreatePrincipal(ctx, t, s, newGroup(3, "devs"))

	// Applied in order.
	tests := []struct {
		name    string
		id      string
		hash    []byte
		wantErr error
		want    []byte // alice's hash afterwards, whoever was changed
	}{
		{name: "set", id: alice.ID, hash: []byte("first"), want: []byte("first")},
		{name: "replace", id: alice.ID, hash: []byte("second"), want: []byte("second")},
		{name: "longest", id: alice.ID, hash: []byte(strings.Repeat("h", store.MaxPasswordHashLen)), want: []byte(strings.Repeat("h", store.MaxPasswordHashLen))},
		{name: "too long", id: alice.ID, hash: make([]byte, store.MaxPasswordHashLen+1), wantErr: store.ErrInvalid, want: []byte(strings.Repeat("h", store.MaxPasswordHashLen))},
		{name: "remove with nil", id: alice.ID, hash: nil, want: nil},
		{name: "set again", id: alice.ID, hash: []byte("third"), want: []byte("third")},
		{name: "remove with empty", id: alice.ID, hash: []byte{}, want: nil},
		{name: "service principal", id: bot.ID, hash: []byte("x"), wantErr: store.ErrInvalid},
		{name: "group", id: devs.ID, hash: []byte("x"), wantErr: store.ErrInvalid},
		{name: "unknown", id: pid(4), hash: []byte("x"), wantErr: store.ErrNotFound},
		{name: "malformed ID", id: "alice", hash: []byte("x"), wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetPasswordHash(t.Context(), tt.id, tt.hash); !errors.Is(err, tt.wantErr) {
				t.Errorf("SetPasswordHash = %v, want %v", err, tt.wantErr)
			}
			got, err := s.GetUserByLogin(t.Context(), alice.LoginName)
			if err != nil {
				t.Fatalf("GetUserByLogin: %v", err)
			}
			if diff := cmp.Diff(signIn(withPassword(alice, string(tt.want))), got, opts); diff != "" {
				t.Errorf("user afterwards (-want +got):\n%s", diff)
			}
		})
	}

	// The store keeps its own copy.
	hash := []byte("mine")
	if err := s.SetPasswordHash(ctx, alice.ID, hash); err != nil {
		t.Fatalf("SetPasswordHash: %v", err)
	}
	hash[0] = 'X'
	if got, err := s.GetUserByLogin(ctx, alice.LoginName); err != nil || string(got.PasswordHash) != "mine" {
		t.Errorf("GetUserByLogin after changing the caller's slice = %q, %v; want %q", got.PasswordHash, err, "mine")
	}
	// Others are untouched.
	for _, want := range []store.Principal{bot, devs} {
		got, err := s.GetPrincipal(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetPrincipal: %v", err)
		}
		if diff := cmp.Diff(want, got, opts); diff != "" {
			t.Errorf("%s changed (-want +got):\n%s", want.DisplayName, diff)
		}
	}
}

// directory is a summary of the principals and what refers to them, for
// checking cascades.
type directory struct {
	Principals  []string            // IDs, in listing order
	Members     map[string][]string // group ID -> direct member IDs, in listing order
	Secrets     map[string][]string // service principal ID -> secret IDs, in listing order
	Assignments []string            // IDs, in listing order
}

// readDirectory summarizes the store.
func readDirectory(t *testing.T, s store.Store) directory {
	t.Helper()
	ctx := t.Context()
	ps, err := s.ListPrincipals(ctx, store.PrincipalFilter{})
	if err != nil {
		t.Fatalf("ListPrincipals: %v", err)
	}
	d := directory{Members: map[string][]string{}, Secrets: map[string][]string{}}
	for _, p := range ps {
		d.Principals = append(d.Principals, p.ID)
		switch p.Type {
		case access.PrincipalGroup:
			members, err := s.ListMembers(ctx, p.ID)
			if err != nil {
				t.Fatalf("ListMembers(%s): %v", p.DisplayName, err)
			}
			for _, m := range members {
				d.Members[p.ID] = append(d.Members[p.ID], m.ID)
			}
		case access.PrincipalServicePrincipal:
			secs, err := s.ListClientSecrets(ctx, p.ID)
			if err != nil {
				t.Fatalf("ListClientSecrets(%s): %v", p.DisplayName, err)
			}
			for _, sec := range secs {
				d.Secrets[p.ID] = append(d.Secrets[p.ID], sec.ID)
			}
		}
	}
	as, err := s.ListRoleAssignments(ctx, store.AssignmentFilter{})
	if err != nil {
		t.Fatalf("ListRoleAssignments: %v", err)
	}
	for _, a := range as {
		d.Assignments = append(d.Assignments, a.ID)
	}
	return d
}

func testDeletePrincipal(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Display names sort like the IDs.
	var (
		alice = mustCreatePrincipal(ctx, t, s, newUser(1, "a alice", "alice@example.com")).ID
		bob   = mustCreatePrincipal(ctx, t, s, newUser(2, "b bob", "bob@example.com")).ID
		bot   = mustCreatePrincipal(ctx, t, s, newSP(3, "c bot")).ID
		devs  = mustCreatePrincipal(ctx, t, s, newGroup(4, "d devs")).ID
		ops   = mustCreatePrincipal(ctx, t, s, newGroup(5, "e ops")).ID
		all   = mustCreatePrincipal(ctx, t, s, newGroup(6, "f all")).ID
		ext   = pid(99) // a user of another issuer
	)
	mustAddMember(ctx, t, s, devs, alice)
	mustAddMember(ctx, t, s, devs, bot)
	mustAddMember(ctx, t, s, ops, bob)
	mustAddMember(ctx, t, s, all, devs)
	mustAddMember(ctx, t, s, all, ops)
	mustCreateSecret(ctx, t, s, newSecret(1, bot, "bot-1", 0, time.Hour))
	mustCreateSecret(ctx, t, s, newSecret(2, bot, "bot-2", time.Minute, time.Hour))
	const cluster = "/groups/prod/clusters/web"
	mustCreateAssignment(ctx, t, s, newAssignment(1, alice, access.PrincipalUser, access.RoleClusterUser, cluster))
	mustCreateAssignment(ctx, t, s, newAssignment(2, alice, access.PrincipalUser, access.RoleKubernetesViewer, cluster))
	mustCreateAssignment(ctx, t, s, newAssignment(3, devs, access.PrincipalGroup, access.RoleClusterUser, "/groups/prod"))
	mustCreateAssignment(ctx, t, s, newAssignment(4, bot, access.PrincipalServicePrincipal, access.RoleReader, "/"))
	mustCreateAssignment(ctx, t, s, newAssignment(5, ext, access.PrincipalUser, access.RoleClusterUser, cluster))
	mustCreateAssignment(ctx, t, s, newAssignment(6, bob, access.PrincipalUser, access.RoleClusterUser, cluster))

	// Applied in order.
	tests := []struct {
		name    string
		id      string
		wantErr error
		want    directory
	}{
		{
			name: "user in a group, with assignments",
			id:   alice,
			want: directory{
				Principals:  []string{bob, bot, devs, ops, all},
				Members:     map[string][]string{devs: {bot}, ops: {bob}, all: {devs, ops}},
				Secrets:     map[string][]string{bot: {sid(1), sid(2)}},
				Assignments: []string{aid(4), aid(3), aid(6), aid(5)},
			},
		},
		{
			name: "group with members, in a group",
			id:   devs,
			want: directory{
				Principals:  []string{bob, bot, ops, all},
				Members:     map[string][]string{ops: {bob}, all: {ops}},
				Secrets:     map[string][]string{bot: {sid(1), sid(2)}},
				Assignments: []string{aid(4), aid(6), aid(5)},
			},
		},
		{
			name: "service principal with secrets",
			id:   bot,
			want: directory{
				Principals:  []string{bob, ops, all},
				Members:     map[string][]string{ops: {bob}, all: {ops}},
				Assignments: []string{aid(6), aid(5)},
			},
		},
		{
			name:    "principal of another issuer keeps its assignments",
			id:      ext,
			wantErr: store.ErrNotFound,
			want: directory{
				Principals:  []string{bob, ops, all},
				Members:     map[string][]string{ops: {bob}, all: {ops}},
				Assignments: []string{aid(6), aid(5)},
			},
		},
		{
			name:    "deleted already",
			id:      alice,
			wantErr: store.ErrNotFound,
			want: directory{
				Principals:  []string{bob, ops, all},
				Members:     map[string][]string{ops: {bob}, all: {ops}},
				Assignments: []string{aid(6), aid(5)},
			},
		},
		{
			name:    "malformed ID",
			id:      "bob@example.com",
			wantErr: store.ErrInvalid,
			want: directory{
				Principals:  []string{bob, ops, all},
				Members:     map[string][]string{ops: {bob}, all: {ops}},
				Assignments: []string{aid(6), aid(5)},
			},
		},
		{
			name: "group that contains a group",
			id:   all,
			want: directory{
				Principals:  []string{bob, ops},
				Members:     map[string][]string{ops: {bob}},
				Assignments: []string{aid(6), aid(5)},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.DeletePrincipal(t.Context(), tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("DeletePrincipal = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, readDirectory(t, s), opts); diff != "" {
				t.Errorf("directory afterwards (-want +got):\n%s", diff)
			}
		})
	}

	// Nothing of the deleted remains: their names and client IDs are free,
	// and a new principal with a deleted one's object ID starts bare.
	mustCreatePrincipal(ctx, t, s, newUser(1, "a alice", "ALICE@example.com"))
	mustCreatePrincipal(ctx, t, s, newSP(3, "c bot"))
	if groups, err := s.GroupsOf(ctx, alice); err != nil || len(groups) != 0 {
		t.Errorf("GroupsOf(recreated alice) = %v, %v; want none", groups, err)
	}
	if _, secs, err := s.FindClientSecrets(ctx, cid(3), t0); err != nil || len(secs) != 0 {
		t.Errorf("FindClientSecrets(recreated bot) = %v, %v; want none", secs, err)
	}
	if as, err := s.ListRoleAssignments(ctx, store.AssignmentFilter{PrincipalIDs: []string{alice, bot}}); err != nil || len(as) != 0 {
		t.Errorf("ListRoleAssignments(recreated alice and bot) = %v, %v; want none", as, err)
	}
}
