package access_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

// permissions is what a role grants, without its prose.
type permissions struct {
	ID, Name, ArcName string
	Actions           []access.Action
	ClusterRole       string
	Levels            []access.Level
}

func permissionsOf(r access.Role) permissions {
	return permissions{ID: r.ID, Name: r.Name, ArcName: r.ArcName, Actions: r.Actions, ClusterRole: r.ClusterRole, Levels: r.Levels}
}

var (
	hubLevels = []access.Level{access.LevelRoot, access.LevelGroup, access.LevelCluster}
	allLevels = []access.Level{access.LevelRoot, access.LevelGroup, access.LevelCluster, access.LevelNamespace}
)

// TestRoleDefinitions is the role table: every built-in role, in order, with
// everything it grants.
func TestRoleDefinitions(t *testing.T) {
	want := []permissions{{
		ID: "reader", Name: "Reader", ArcName: "Reader",
		Actions: []access.Action{"clusters/read", "assignments/read", "principals/read", "audit/read"},
		Levels:  hubLevels,
	}, {
		ID: "cluster-user", Name: "Cluster User", ArcName: "Azure Arc Enabled Kubernetes Cluster User Role",
		Actions: []access.Action{"clusters/read", "clusters/connect"},
		Levels:  hubLevels,
	}, {
		ID: "kubernetes-viewer", Name: "Kubernetes Viewer", ArcName: "Azure Arc Kubernetes Viewer",
		ClusterRole: "view", Levels: allLevels,
	}, {
		ID: "kubernetes-writer", Name: "Kubernetes Writer", ArcName: "Azure Arc Kubernetes Writer",
		ClusterRole: "edit", Levels: allLevels,
	}, {
		ID: "kubernetes-admin", Name: "Kubernetes Admin", ArcName: "Azure Arc Kubernetes Admin",
		ClusterRole: "admin", Levels: allLevels,
	}, {
		ID: "kubernetes-cluster-admin", Name: "Kubernetes Cluster Admin", ArcName: "Azure Arc Kubernetes Cluster Admin",
		ClusterRole: "cluster-admin", Levels: hubLevels,
	}, {
		ID: "contributor", Name: "Contributor", ArcName: "Contributor",
		Actions: []access.Action{"clusters/read", "clusters/write", "clusters/delete", "clusters/connect", "assignments/read", "principals/read", "audit/read"},
		Levels:  hubLevels,
	}, {
		ID: "owner", Name: "Owner", ArcName: "Owner",
		Actions: []access.Action{"clusters/read", "clusters/write", "clusters/delete", "clusters/connect", "assignments/read", "assignments/write", "principals/read", "principals/write", "audit/read"},
		Levels:  hubLevels,
	}}
	var got []permissions
	for _, r := range access.RoleDefinitions() {
		got = append(got, permissionsOf(r))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("RoleDefinitions() (-want +got):\n%s", diff)
	}
}

// TestRoleAllows is the same table read the other way: for every action,
// the roles that allow it.
func TestRoleAllows(t *testing.T) {
	tests := []struct {
		name   access.Action
		allows []string
	}{
		{"clusters/read", []string{"reader", "cluster-user", "contributor", "owner"}},
		{"clusters/write", []string{"contributor", "owner"}},
		{"clusters/delete", []string{"contributor", "owner"}},
		{"clusters/connect", []string{"cluster-user", "contributor", "owner"}},
		{"assignments/read", []string{"reader", "contributor", "owner"}},
		{"assignments/write", []string{"owner"}},
		{"principals/read", []string{"reader", "contributor", "owner"}},
		{"principals/write", []string{"owner"}},
		{"audit/read", []string{"reader", "contributor", "owner"}},
		{"unknown action", nil},
		{"*", nil},
	}
	for _, tt := range tests {
		t.Run(string(tt.name), func(t *testing.T) {
			var got []string
			for _, r := range access.RoleDefinitions() {
				got = append(got, allowedBy(r, tt.name)...)
			}
			if diff := cmp.Diff(tt.allows, got); diff != "" {
				t.Errorf("roles allowing %s (-want +got):\n%s", tt.name, diff)
			}
		})
	}
}

// allowedBy returns r's ID if it allows a.
func allowedBy(r access.Role, a access.Action) []string {
	if r.Allows(a) {
		return []string{r.ID}
	}
	return nil
}

func TestActions(t *testing.T) {
	want := []access.Action{"clusters/read", "clusters/write", "clusters/delete", "clusters/connect", "assignments/read", "assignments/write", "principals/read", "principals/write", "audit/read"}
	if diff := cmp.Diff(want, access.Actions()); diff != "" {
		t.Errorf("Actions() (-want +got):\n%s", diff)
	}
}

func TestRoleDefinitionsAreFresh(t *testing.T) {
	first := access.RoleDefinitions()
	first[0].Actions[0] = "principals/write"
	first[0].Levels[0] = access.LevelNamespace
	first[1].Name = "changed"
	if diff := cmp.Diff(access.RoleDefinitions()[:2], mustRoles(t, "reader", "cluster-user")); diff != "" {
		t.Errorf("a caller's change leaked into RoleDefinitions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(access.Action("clusters/read"), access.RoleDefinitions()[0].Actions[0]); diff != "" {
		t.Errorf("Reader's first action (-want +got):\n%s", diff)
	}
}

func mustRoles(t *testing.T, ids ...string) []access.Role {
	t.Helper()
	var rs []access.Role
	for _, id := range ids {
		r, err := access.LookupRole(id)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

func TestLookupRole(t *testing.T) {
	const hint = `; run "tether role definition list" to see the roles, and give an ID such as cluster-user or a name such as "Kubernetes Viewer"`
	tests := []struct {
		name     string
		in       string
		wantID   string
		wantErr  string
		notFound bool
	}{
		{"ID", "cluster-user", "cluster-user", "", false},
		{"display name", "Cluster User", "cluster-user", "", false},
		{"display name, other case", "cLUSTER uSER", "cluster-user", "", false},
		{"ID, uppercase", "KUBERNETES-VIEWER", "kubernetes-viewer", "", false},
		{"Arc name", "Azure Arc Kubernetes Viewer", "kubernetes-viewer", "", false},
		{"Arc cluster user name", "azure arc enabled kubernetes cluster user role", "cluster-user", "", false},
		{"writer", "Kubernetes Writer", "kubernetes-writer", "", false},
		{"admin", "kubernetes-admin", "kubernetes-admin", "", false},
		{"cluster admin", "Kubernetes Cluster Admin", "kubernetes-cluster-admin", "", false},
		{"owner", "owner", "owner", "", false},
		{"contributor", "Contributor", "contributor", "", false},
		{"reader", "READER", "reader", "", false},
		{"empty", "", "", `role "": role not found` + hint, true},
		{"Kubernetes ClusterRole name", "view", "", `role "view": role not found` + hint, true},
		{"surrounding space", " owner", "", `role " owner": role not found` + hint, true},
		{"Kelvin sign", "\u212Aubernetes Viewer", "", `role "\u212aubernetes Viewer": role not found` + hint, true},
		{"prefix", "Kubernetes", "", `role "Kubernetes": role not found` + hint, true},
		{"long input is clipped", strings.Repeat("x", 1000), "", `role "` + strings.Repeat("x", 64) + `"...: role not found` + hint, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := access.LookupRole(tt.in)
			type result struct {
				ID, Err  string
				NotFound bool
			}
			want := result{tt.wantID, tt.wantErr, tt.notFound}
			got := result{r.ID, errText(err), errors.Is(err, access.ErrRoleNotFound)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("LookupRole(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// lowerASCII maps only A-Z to a-z, the case folding LookupRole promises.
func lowerASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

func FuzzLookupRole(f *testing.F) {
	for _, r := range access.RoleDefinitions() {
		f.Add(r.ID)
		f.Add(r.Name)
		f.Add(strings.ToUpper(r.ArcName))
	}
	for _, s := range []string{"", "view", "cluster-admin", " owner", "owner ", "\u212Aubernetes Viewer", "Ownerß", "\xff", "OWNER\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want string
		for _, r := range access.RoleDefinitions() {
			for _, name := range []string{r.ID, r.Name, r.ArcName} {
				if want == "" && lowerASCII(s) == lowerASCII(name) && len(s) == len(name) {
					want = r.ID
				}
			}
		}
		r, err := access.LookupRole(s)
		if r.ID != want {
			t.Fatalf("LookupRole(%q) = %q, %v; want %q", s, r.ID, err, want)
		}
		if (err == nil) != (want != "") || (err != nil && !errors.Is(err, access.ErrRoleNotFound)) {
			t.Fatalf("LookupRole(%q) error = %v", s, err)
		}
		if err != nil && len(err.Error()) > 512 { // at most 64 input bytes, each quoted as up to 4
			t.Fatalf("LookupRole(%q): error of %d bytes", s, len(err.Error()))
		}
	})
}
