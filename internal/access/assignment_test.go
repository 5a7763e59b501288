package access_test

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

// Object IDs used across the tests.
const (
	alice = "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b" // a user
	bob   = "5b8e1f2a-0c3d-4e5f-8a9b-0c1d2e3f4a5b" // a service principal
	devs  = "9d1c2b3a-4f5e-4d6c-8b7a-6f5e4d3c2b1a" // a group alice is in
	ops   = "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d" // a group alice is not in
)

const (
	cluster   = "/groups/prod/clusters/web"
	namespace = "/groups/prod/clusters/web/namespaces/shop"
)

func user(id, role, scope string) access.Assignment {
	return access.Assignment{ID: "a-" + role, PrincipalID: id, PrincipalType: access.PrincipalUser, RoleID: role, Scope: scope}
}

func group(id, role, scope string) access.Assignment {
	return access.Assignment{ID: "a-" + role, PrincipalID: id, PrincipalType: access.PrincipalGroup, RoleID: role, Scope: scope}
}

func sp(id, role, scope string) access.Assignment {
	return access.Assignment{ID: "a-" + role, PrincipalID: id, PrincipalType: access.PrincipalServicePrincipal, RoleID: role, Scope: scope}
}

// checked is what Validate returned, in a comparable form.
type checked struct {
	Err     string
	Invalid bool
}

func check(err error) checked { return checked{errText(err), errors.Is(err, access.ErrInvalid)} }

func rejected(msg string) checked { return checked{msg, true} }

func TestAssignmentValidate(t *testing.T) {
	const nsOf = "/groups/prod/clusters/web/namespaces/shop"
	tests := []struct {
		name string
		in   access.Assignment
		want checked
	}{
		{"cluster user at cluster", user(alice, "cluster-user", cluster), checked{}},
		{"cluster user at group", group(devs, "cluster-user", "/groups/prod"), checked{}},
		{"cluster user at root", sp(bob, "cluster-user", "/"), checked{}},
		{"viewer at namespace", user(alice, "kubernetes-viewer", nsOf), checked{}},
		{"writer at namespace", user(alice, "kubernetes-writer", nsOf), checked{}},
		{"admin at namespace", user(alice, "kubernetes-admin", nsOf), checked{}},
		{"admin at cluster", user(alice, "kubernetes-admin", cluster), checked{}},
		{"cluster admin at cluster", user(alice, "kubernetes-cluster-admin", cluster), checked{}},
		{"cluster admin at group", group(devs, "kubernetes-cluster-admin", "/groups/prod"), checked{}},
		{"owner at root", user(alice, "owner", "/"), checked{}},
		{"contributor at cluster", user(alice, "contributor", cluster), checked{}},
		{"reader at group", user(alice, "reader", "/groups/prod"), checked{}},
		{"ID is not checked", access.Assignment{PrincipalID: alice, PrincipalType: access.PrincipalUser, RoleID: "reader", Scope: "/"}, checked{}},

		{"cluster admin at namespace", user(alice, "kubernetes-cluster-admin", nsOf), rejected(
			`role "Kubernetes Cluster Admin" cannot be assigned at namespace scope ` + nsOf + `: it gives the whole cluster; ` +
				`assign "Kubernetes Admin" there for namespace admin, or "Kubernetes Cluster Admin" at the cluster /groups/prod/clusters/web`)},
		{"cluster user at namespace", user(alice, "cluster-user", nsOf), rejected(
			`role "Cluster User" cannot be assigned at namespace scope ` + nsOf + `: connecting is granted per cluster; ` +
				`assign it at the cluster /groups/prod/clusters/web, and limit what the principal may do there with "Kubernetes Viewer", "Kubernetes Writer" or "Kubernetes Admin" at the namespace`)},
		{"owner at namespace", user(alice, "owner", nsOf), rejected(
			`role "Owner" cannot be assigned at namespace scope ` + nsOf + `: hub roles apply to clusters and groups; assign it at the cluster /groups/prod/clusters/web or its group`)},
		{"contributor at namespace", group(devs, "contributor", nsOf), rejected(
			`role "Contributor" cannot be assigned at namespace scope ` + nsOf + `: hub roles apply to clusters and groups; assign it at the cluster /groups/prod/clusters/web or its group`)},
		{"reader at namespace", sp(bob, "reader", nsOf), rejected(
			`role "Reader" cannot be assigned at namespace scope ` + nsOf + `: hub roles apply to clusters and groups; assign it at the cluster /groups/prod/clusters/web or its group`)},
		{"role display name instead of ID", user(alice, "Cluster User", cluster), rejected(
			`role assignment: role "Cluster User" is a name, not an ID: store the ID "cluster-user"`)},
		{"unknown role", user(alice, "cluster-admin", cluster), rejected(
			`role assignment: unknown role ID "cluster-admin"; run "tether role definition list" to see the roles`)},
		{"empty role", user(alice, "", cluster), rejected(
			`role assignment: unknown role ID ""; run "tether role definition list" to see the roles`)},
		{"invalid scope", user(alice, "reader", "/groups/Prod"), rejected(
			`role assignment: invalid scope "/groups/Prod": group name "Prod": use lowercase letters, digits and '-', starting and ending with a letter or digit`)},
		{"empty scope", user(alice, "reader", ""), rejected(
			`role assignment: invalid scope "": ` + formats)},
		{"unknown principal type", access.Assignment{PrincipalID: alice, PrincipalType: "User", RoleID: "reader", Scope: "/"}, rejected(
			`role assignment: invalid principal type "User": want user, servicePrincipal or group`)},
		{"empty principal type", access.Assignment{PrincipalID: alice, RoleID: "reader", Scope: "/"}, rejected(
			`role assignment: invalid principal type "": want user, servicePrincipal or group`)},
		{"principal ID is a name", user("alice@example.com", "reader", "/"), rejected(
			`role assignment: assignee: invalid object ID "alice@example.com": want an object ID, a UUID such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b (look it up with "... show --query id -o tsv")`)},
		{"principal ID is a system: group", group("system:masters", "kubernetes-cluster-admin", cluster), rejected(
			`role assignment: assignee: invalid object ID "system:masters": want an object ID, a UUID such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b (look it up with "... show --query id -o tsv")`)},
		{"principal ID in uppercase", user(strings.ToUpper(alice), "reader", "/"), rejected(
			`role assignment: assignee: invalid object ID "3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B": write it in lowercase`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, check(tt.in.Validate())); diff != "" {
				t.Errorf("%+v.Validate() (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestValidateObjectID(t *testing.T) {
	const hint = `: want an object ID, a UUID such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b (look it up with "... show --query id -o tsv")`
	tests := []struct {
		name string
		in   string
		want checked
	}{
		{"user", alice, checked{}},
		{"all digits", "12345678-1234-1234-1234-123456789012", checked{}},
		{"max", "ffffffff-ffff-ffff-ffff-ffffffffffff", checked{}},
		{"empty", "", rejected(`invalid object ID ""` + hint)},
		{"nil UUID", "00000000-0000-0000-0000-000000000000", rejected(`invalid object ID "00000000-0000-0000-0000-000000000000": the nil UUID names no principal`)},
		{"uppercase", "3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B", rejected(`invalid object ID "3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B": write it in lowercase`)},
		{"braces", "{3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b}", rejected(`invalid object ID "{3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b}"` + hint)},
		{"no hyphens", "3f2a0c4e8b1d4e5f9a6b7c8d9e0f1a2b", rejected(`invalid object ID "3f2a0c4e8b1d4e5f9a6b7c8d9e0f1a2b"` + hint)},
		{"hyphen misplaced", "3f2a0c4e8-b1d-4e5f-9a6b-7c8d9e0f1a2b", rejected(`invalid object ID "3f2a0c4e8-b1d-4e5f-9a6b-7c8d9e0f1a2b"` + hint)},
		{"not hex", "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2g", rejected(`invalid object ID "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2g"` + hint)},
		{"system: name of UUID length", "system:masters-aaaaaaaaaaaaaaaaaaaaa", rejected(`invalid object ID "system:masters-aaaaaaaaaaaaaaaaaaaaa"` + hint)},
		{"non-ASCII is escaped", "caf\u00e9", rejected(`invalid object ID "caf\u00e9"` + hint)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, check(access.ValidateObjectID(tt.in))); diff != "" {
				t.Errorf("ValidateObjectID(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// objectIDRE is the object ID rule as a regular expression, the fuzz oracle
// for ValidateObjectID.
var objectIDRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func FuzzValidateObjectID(f *testing.F) {
	for _, s := range []string{alice, bob, devs, "", "00000000-0000-0000-0000-000000000000", strings.ToUpper(alice), "{" + alice + "}", alice + "\n", "system:masters", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := access.ValidateObjectID(s)
		want := objectIDRE.MatchString(s) && s != "00000000-0000-0000-0000-000000000000"
		if got := err == nil; got != want {
			t.Fatalf("ValidateObjectID(%q) = %v, want valid %v", s, err, want)
		}
		if err != nil && !errors.Is(err, access.ErrInvalid) {
			t.Fatalf("ValidateObjectID(%q) = %v, does not match ErrInvalid", s, err)
		}
	})
}
