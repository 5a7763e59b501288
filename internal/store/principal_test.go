package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

func TestValidateLoginName(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"e-mail address", "alice@example.com", true},
		{"plain name", "alice", true},
		{"mixed case", "Alice@Example.COM", true},
		{"non-ASCII", "jürgen@bücher.example", true},
		{"punctuation", "o'brien+ops@example.com", true},
		{"longest", strings.Repeat("a", store.MaxLoginNameLen), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", store.MaxLoginNameLen+1), false},
		{"space", "alice smith", false},
		{"leading space", " alice", false},
		{"tab", "alice\t", false},
		{"no-break space", "alice\u00a0smith", false},
		{"zero-width space", "ali\u200bce", false},
		{"right-to-left override", "alice\u202e", false},
		{"NUL", "alice\x00", false},
		{"not UTF-8", "al\xffce", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateLoginName(tt.in)
			if got := err == nil; got != tt.valid {
				t.Errorf("ValidateLoginName(%q) = %v, want valid %v", tt.in, err, tt.valid)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ValidateLoginName(%q) = %v, does not match ErrInvalid", tt.in, err)
			}
		})
	}
}

func TestFoldLoginName(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"identical", "alice@example.com", "alice@example.com", true},
		{"ASCII case", "Alice@Example.COM", "alice@example.com", true},
		{"Latin-1 case", "JÜRGEN", "jürgen", true},
		{"Kelvin sign and k", "\u212aim", "kim", true},
		{"long s and s", "\u017fam", "Sam", true},
		{"sharp s and capital sharp s", "straße", "STRAẞE", true},
		{"Greek final sigma", "ΟΔΟΣ", "οδος", true},
		{"sharp s and ss: simple folding only", "straße", "strasse", false},
		{"dotless i and i", "\u0131d", "id", false},
		{"different names", "alice", "alicia", false},
		{"prefix", "alice", "alice2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			same := store.FoldLoginName(tt.a) == store.FoldLoginName(tt.b)
			if same != tt.same {
				t.Errorf("FoldLoginName(%q) == FoldLoginName(%q) is %v, want %v", tt.a, tt.b, same, tt.same)
			}
			if eq := strings.EqualFold(tt.a, tt.b); eq != same {
				t.Errorf("strings.EqualFold(%q, %q) = %v, but the folds are equal: %v", tt.a, tt.b, eq, same)
			}
		})
	}
}

// TestFoldLoginNameEveryRune checks, for every rune, that its fold is
// strings.EqualFold to it and is the fold of every rune of its case orbit.
// Since folding is rune by rune, two valid login names then have equal
// folds exactly when strings.EqualFold reports them equal.
func TestFoldLoginNameEveryRune(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue // surrogates: never in valid UTF-8
		}
		s := string(r)
		fold := store.FoldLoginName(s)
		if !strings.EqualFold(s, fold) {
			t.Fatalf("FoldLoginName(%+q) = %+q, which strings.EqualFold does not match", s, fold)
		}
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if got := store.FoldLoginName(string(f)); got != fold {
				t.Fatalf("FoldLoginName(%+q) = %+q, but FoldLoginName(%+q) = %+q", string(f), got, s, fold)
			}
		}
	}
}

func TestValidateUUID(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"version 4", "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b", true},
		{"any version", "00000001-0000-0000-0000-000000000000", true},
		{"all f", "ffffffff-ffff-ffff-ffff-ffffffffffff", true},
		{"nil", "00000000-0000-0000-0000-000000000000", false},
		{"uppercase", "3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B", false},
		{"without hyphens", "3f2a0c4e8b1d4e5f9a6b7c8d9e0f1a2b", false},
		{"braces", "{3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b}", false},
		{"URN", "urn:uuid:3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b", false},
		{"hyphen misplaced", "3f2a0c4e8-b1d-4e5f-9a6b-7c8d9e0f1a2b", false},
		{"not hexadecimal", "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2g", false},
		{"empty", "", false},
		{"long", strings.Repeat("a", 1000), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateUUID(tt.in)
			if got := err == nil; got != tt.valid {
				t.Errorf("ValidateUUID(%q) = %v, want valid %v", tt.in, err, tt.valid)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ValidateUUID(%q) = %v, does not match ErrInvalid", tt.in, err)
			}
		})
	}
}

// TestAccessErrors checks that validation done by package access matches
// both packages' ErrInvalid and keeps access's advice.
func TestAccessErrors(t *testing.T) {
	valid := store.RoleAssignment{
		Assignment: access.Assignment{
			ID:            "5b8e1f2a-0c3d-4e5f-8a9b-0c1d2e3f4a5b",
			PrincipalID:   "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b",
			PrincipalType: access.PrincipalUser,
			RoleID:        access.RoleClusterUser,
			Scope:         "/groups/prod/clusters/web",
		},
		CreatedAt: time.Unix(1, 0),
	}
	namespaced := valid
	namespaced.Scope += "/namespaces/shop"
	byName := valid
	byName.RoleID = "Cluster User"
	badScope := valid
	badScope.Scope = "/groups/prod/"
	tests := []struct {
		name     string
		err      error
		mention  string
		isAccess bool
	}{
		{"object ID", store.ValidateObjectID("3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B"), "lowercase", true},
		{"role not assignable at the scope", namespaced.Validate(), "cannot be assigned at namespace scope", true},
		{"role name for its ID", byName.Validate(), `store the ID "cluster-user"`, true},
		{"scope", badScope.Validate(), "trailing slash", true},
		{"filter scope", store.AssignmentFilter{Scope: "/groups/prod/"}.Validate(), "trailing slash", true},
		{"assignment ID is the store's", store.RoleAssignment{Assignment: access.Assignment{ID: "a-1"}}.Validate(), "UUID", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, store.ErrInvalid) {
				t.Errorf("error %v does not match store.ErrInvalid", tt.err)
			}
			if got := errors.Is(tt.err, access.ErrInvalid); got != tt.isAccess {
				t.Errorf("errors.Is(%v, access.ErrInvalid) = %v, want %v", tt.err, got, tt.isAccess)
			}
			if !strings.Contains(tt.err.Error(), tt.mention) {
				t.Errorf("error %q does not mention %q", tt.err, tt.mention)
			}
		})
	}
	if err := valid.Validate(); err != nil {
		t.Errorf("valid assignment: %v", err)
	}
}
