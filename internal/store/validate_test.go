package store_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"tether.dev/tether/internal/store"
)

// nameRE is the name rule as a regular expression, the oracle for
// ValidateName.
var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func TestValidateName(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		valid bool
	}{
		{"single letter", "a", true},
		{"single digit", "0", true},
		{"hyphens inside", "prod-eu-1", true},
		{"double hyphen", "a--b", true},
		{"longest", strings.Repeat("a", 63), true},
		{"empty", "", false},
		{"too long", strings.Repeat("a", 64), false},
		{"uppercase", "Prod", false},
		{"leading hyphen", "-a", false},
		{"trailing hyphen", "a-", false},
		{"lone hyphen", "-", false},
		{"underscore", "a_b", false},
		{"dot", "a.b", false},
		{"slash", "a/b", false},
		{"space", "a b", false},
		{"non-ASCII", "café", false},
		{"NUL", "a\x00", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := store.ValidateName(tt.in)
			if got := err == nil; got != tt.valid {
				t.Errorf("ValidateName(%q) = %v, want valid %v", tt.in, err, tt.valid)
			}
			if err != nil && !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ValidateName(%q) = %v, does not match ErrInvalid", tt.in, err)
			}
		})
	}
}

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"", "a", "0", "prod-eu-1", "a--b", "-a", "a-", "-", "Prod", "a_b", "a.b", "café", "\xff", strings.Repeat("a", 63), strings.Repeat("a", 64)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := store.ValidateName(s)
		want := nameRE.MatchString(s) && len(s) <= store.MaxNameLen
		if got := err == nil; got != want {
			t.Fatalf("ValidateName(%q) = %v, want valid %v", s, err, want)
		}
		if err != nil && !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("ValidateName(%q) = %v, does not match ErrInvalid", s, err)
		}
	})
}

func TestParseClusterID(t *testing.T) {
	tests := []struct {
		name      string
		id        string
		wantGroup string
		wantName  string
		wantErr   error
	}{
		{"valid", "/groups/prod/clusters/web", "prod", "web", nil},
		{"hyphens", "/groups/a-b/clusters/c-1", "a-b", "c-1", nil},
		{"empty", "", "", "", store.ErrInvalid},
		{"no leading slash", "groups/prod/clusters/web", "", "", store.ErrInvalid},
		{"trailing slash", "/groups/prod/clusters/web/", "", "", store.ErrInvalid},
		{"missing name", "/groups/prod/clusters/", "", "", store.ErrInvalid},
		{"missing group", "/groups//clusters/web", "", "", store.ErrInvalid},
		{"group only", "/groups/prod", "", "", store.ErrInvalid},
		{"namespace scope", "/groups/prod/clusters/web/namespaces/default", "", "", store.ErrInvalid},
		{"uppercase", "/Groups/prod/clusters/web", "", "", store.ErrInvalid},
		{"too long", "/groups/" + strings.Repeat("a", 64) + "/clusters/web", "", "", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			group, name, err := store.ParseClusterID(tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ParseClusterID(%q) error = %v, want %v", tt.id, err, tt.wantErr)
			}
			if group != tt.wantGroup || name != tt.wantName {
				t.Errorf("ParseClusterID(%q) = %q, %q, want %q, %q", tt.id, group, name, tt.wantGroup, tt.wantName)
			}
		})
	}
}

func FuzzParseClusterID(f *testing.F) {
	for _, s := range []string{"/groups/prod/clusters/web", "/groups/a/clusters/b/clusters/c", "/groups//clusters/", "/groups/prod/clusters/web/", "/groups/a/clusters/-", "groups/a/clusters/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		group, name, err := store.ParseClusterID(id)
		if err != nil {
			if !errors.Is(err, store.ErrInvalid) {
				t.Fatalf("ParseClusterID(%q) = %v, does not match ErrInvalid", id, err)
			}
			return
		}
		if store.ValidateName(group) != nil || store.ValidateName(name) != nil {
			t.Fatalf("ParseClusterID(%q) = %q, %q: invalid parts", id, group, name)
		}
		if got := store.ClusterID(group, name); got != id {
			t.Fatalf("ClusterID(ParseClusterID(%q)) = %q", id, got)
		}
	})
}

func TestParseClusterMode(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    store.ClusterMode
		wantErr error
	}{
		{"default", "", store.ModeKubernetesRBAC, nil},
		{"kubernetes rbac", "kubernetes-rbac", store.ModeKubernetesRBAC, nil},
		{"hub rbac", "hub-rbac", store.ModeHubRBAC, nil},
		{"unknown", "azure-rbac", "", store.ErrInvalid},
		{"case matters", "Hub-RBAC", "", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := store.ParseClusterMode(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseClusterMode(%q) = %q, %v, want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestValidateLocation(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr error
	}{
		{"empty", "", nil},
		{"azure region", "eastus2", nil},
		{"free text", "Frankfurt DC-2 (rack 7)", nil},
		{"longest", strings.Repeat("x", store.MaxLocationLen), nil},
		{"too long", strings.Repeat("x", store.MaxLocationLen+1), store.ErrInvalid},
		{"leading space", " eastus", store.ErrInvalid},
		{"trailing space", "eastus ", store.ErrInvalid},
		{"tab", "east\tus", store.ErrInvalid},
		{"not UTF-8", "\xffeastus", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := store.ValidateLocation(tt.in); !errors.Is(err, tt.wantErr) {
				t.Errorf("ValidateLocation(%q) = %v, want %v", tt.in, err, tt.wantErr)
			}
		})
	}
}
