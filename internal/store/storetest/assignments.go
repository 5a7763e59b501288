package storetest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
)

// Scopes of the assignment tests.
const (
	clusterWeb = "/groups/prod/clusters/web"
	nsShop     = "/groups/prod/clusters/web/namespaces/shop"
)

func testCreateRoleAssignment(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustCreatePrincipal(ctx, t, s, newUser(1, "Alice", "alice@example.com")).ID
	devs := mustCreatePrincipal(ctx, t, s, newGroup(2, "devs")).ID
	bot := mustCreatePrincipal(ctx, t, s, newSP(3, "bot")).ID
	ext := pid(99) // a group of another issuer

	tests := []struct {
		name string
		in   store.RoleAssignment
	}{
		{"user at a cluster", newAssignment(1, alice, access.PrincipalUser, access.RoleClusterUser, clusterWeb)},
		{"same user and scope, another role", newAssignment(2, alice, access.PrincipalUser, access.RoleKubernetesViewer, clusterWeb)},
		{"same user and role, another scope", newAssignment(3, alice, access.PrincipalUser, access.RoleKubernetesViewer, nsShop)},
		{"group at a group", newAssignment(4, devs, access.PrincipalGroup, access.RoleContributor, "/groups/prod")},
		{"service principal at the root", newAssignment(5, bot, access.PrincipalServicePrincipal, access.RoleOwner, "/")},
		{"principal of another issuer", newAssignment(6, ext, access.PrincipalGroup, access.RoleKubernetesAdmin, nsShop)},
		{"another time", store.RoleAssignment{
			Assignment: access.Assignment{ID: aid(7), PrincipalID: alice, PrincipalType: access.PrincipalUser, RoleID: access.RoleReader, Scope: "/groups/dev"},
			CreatedAt:  at(time.Hour + time.Nanosecond),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateRoleAssignment(t.Context(), tt.in); err != nil {
				t.Fatalf("CreateRoleAssignment: %v", err)
			}
			got, err := s.GetRoleAssignment(t.Context(), tt.in.ID)
			if err != nil {
				t.Fatalf("GetRoleAssignment: %v", err)
			}
			if diff := cmp.Diff(storedAssignment(tt.in), got, opts); diff != "" {
				t.Errorf("GetRoleAssignment mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testCreateRoleAssignmentInvalid(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustCreatePrincipal(ctx, t, s, newUser(1, "Alice", "alice@example.com")).ID
	devs := mustCreatePrincipal(ctx, t, s, newGroup(2, "devs")).ID
	with := func(f func(a *store.RoleAssignment)) store.RoleAssignment {
		a := newAssignment(1, alice, access.PrincipalUser, access.RoleClusterUser, clusterWeb)
		f(&a)
		return a
	}
	tests := []struct {
		name string
		in   store.RoleAssignment
	}{
		{"empty ID", with(func(a *store.RoleAssignment) { a.ID = "" })},
		{"ID not a UUID", with(func(a *store.RoleAssignment) { a.ID = "alice-cluster-user" })},
		{"uppercase ID", with(func(a *store.RoleAssignment) { a.ID = strings.ToUpper(uuid(0xa, 1)) })},
		{"malformed principal ID", with(func(a *store.RoleAssignment) { a.PrincipalID = "alice@example.com" })},
		{"empty principal type", with(func(a *store.RoleAssignment) { a.PrincipalType = "" })},
		{"unknown principal type", with(func(a *store.RoleAssignment) { a.PrincipalType = "application" })},
		{"unknown role", with(func(a *store.RoleAssignment) { a.RoleID = "superuser" })},
		{"role name instead of ID", with(func(a *store.RoleAssignment) { a.RoleID = "Cluster User" })},
		{"empty scope", with(func(a *store.RoleAssignment) { a.Scope = "" })},
		{"scope with a trailing slash", with(func(a *store.RoleAssignment) { a.Scope = clusterWeb + "/" })},
		{"scope in uppercase", with(func(a *store.RoleAssignment) { a.Scope = "/groups/Prod" })},
		{"cluster user at a namespace", with(func(a *store.RoleAssignment) { a.Scope = nsShop })},
		{"cluster admin at a namespace", with(func(a *store.RoleAssignment) { a.RoleID, a.Scope = access.RoleKubernetesClusterAdmin, nsShop })},
		{"zero creation time", with(func(a *store.RoleAssignment) { a.CreatedAt = time.Time{} })},
		{"user named as a group", with(func(a *store.RoleAssignment) { a.PrincipalType = access.PrincipalGroup })},
		{"group named as a user", with(func(a *store.RoleAssignment) { a.PrincipalID = devs })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateRoleAssignment(t.Context(), tt.in); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateRoleAssignment(%+v) = %v, want %v", tt.in, err, store.ErrInvalid)
			}
		})
	}
	got, err := s.ListRoleAssignments(ctx, store.AssignmentFilter{})
	if err != nil {
		t.Fatalf("ListRoleAssignments: %v", err)
	}
	if diff := cmp.Diff([]store.RoleAssignment(nil), got, opts); diff != "" {
		t.Errorf("ListRoleAssignments after invalid creates (-want +got):\n%s", diff)
	}
}

func testCreateRoleAssignmentConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	alice := mustCreatePrincipal(ctx, t, s, newUser(1, "Alice", "alice@example.com")).ID
	ext := pid(99)
	first := mustCreateAssignment(ctx, t, s, newAssignment(1, alice, access.PrincipalUser, access.RoleClusterUser, clusterWeb))
	second := mustCreateAssignment(ctx, t, s, newAssignment(2, ext, access.PrincipalUser, access.RoleKubernetesViewer, clusterWeb))

	// Applied in order.
	tests := []struct {
		name    string
		in      store.RoleAssignment
		wantErr error
	}{
		{"same principal, role and scope", newAssignment(3, alice, access.PrincipalUser, access.RoleClusterUser, clusterWeb), store.ErrConflict},
		{"same for another issuer's principal", newAssignment(4, ext, access.PrincipalUser, access.RoleKubernetesViewer, clusterWeb), store.ErrConflict},
		{"same, another issuer's principal typed otherwise", newAssignment(5, ext, access.PrincipalGroup, access.RoleKubernetesViewer, clusterWeb), store.ErrConflict},
		{"same ID", newAssignment(1, alice, access.PrincipalUser, access.RoleReader, "/"), store.ErrConflict},
		{"same role at the parent scope", newAssignment(6, alice, access.PrincipalUser, access.RoleClusterUser, "/groups/prod"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.CreateRoleAssignment(t.Context(), tt.in); !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateRoleAssignment = %v, want %v", err, tt.wantErr)
			}
		})
	}
	for _, want := range []store.RoleAssignment{first, second} {
		got, err := s.GetRoleAssignment(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetRoleAssignment: %v", err)
		}
		if diff := cmp.Diff(want, got, opts); diff != "" {
			t.Errorf("conflicting creates changed an assignment (-want +got):\n%s", diff)
		}
	}
}

// testCreateRoleAssignmentConcurrent races identical assignments under
// their own IDs: exactly one is stored.
func testCreateRoleAssignmentConcurrent(t *testing.T, s store.Store) {
	const n = 20
	ctx := t.Context()
	errs := race(n, func(i int) error {
		return s.CreateRoleAssignment(ctx, newAssignment(i+1, pid(1), access.PrincipalUser, access.RoleClusterUser, clusterWeb))
	})
	winner := exactlyOne(t, "creation", errs, store.ErrConflict)
	got, err := s.ListRoleAssignments(ctx, store.AssignmentFilter{})
	if err != nil {
		t.Fatalf("ListRoleAssignments: %v", err)
	}
	want := []store.RoleAssignment{storedAssignment(newAssignment(winner+1, pid(1), access.PrincipalUser, access.RoleClusterUser, clusterWeb))}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("ListRoleAssignments (-want +got):\n%s", diff)
	}
}

func testGetRoleAssignment(t *testing.T, s store.Store) {
	mustCreateAssignment(t.Context(), t, s, newAssignment(1, pid(1), access.PrincipalUser, access.RoleClusterUser, clusterWeb))
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"unknown", aid(2), store.ErrNotFound},
		{"principal's ID", pid(1), store.ErrNotFound},
		{"empty", "", store.ErrInvalid},
		{"malformed", "a-1", store.ErrInvalid},
		{"uppercase", strings.ToUpper(uuid(0xa, 1)), store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.GetRoleAssignment(t.Context(), tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("GetRoleAssignment(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
}

func testListRoleAssignments(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Principals need not be in the directory. The group's ID sorts before
	// the users'.
	var (
		group = pid(1)
		user  = pid(2)
		other = pid(3)
	)
	userAt := func(n int, role, scope string) store.RoleAssignment {
		return newAssignment(n, user, access.PrincipalUser, role, scope)
	}
	groupAt := func(n int, role, scope string) store.RoleAssignment {
		return newAssignment(n, group, access.PrincipalGroup, role, scope)
	}
	// Created out of order. Scopes whose paths share a prefix with the
	// cluster's must not be mistaken for its ancestors or descendants:
	// "/groups/prod-eu" and ".../clusters/web-2" ('-' sorts before '/'),
	// ".../clusters/web0" ('0' sorts right after '/') and ".../clusters/we".
	var (
		webShop   = mustCreateAssignment(ctx, t, s, userAt(4, access.RoleKubernetesWriter, nsShop))
		root      = mustCreateAssignment(ctx, t, s, userAt(1, access.RoleOwner, "/"))
		prod      = mustCreateAssignment(ctx, t, s, groupAt(2, access.RoleContributor, "/groups/prod"))
		web       = mustCreateAssignment(ctx, t, s, userAt(3, access.RoleClusterUser, clusterWeb))
		webBlog   = mustCreateAssignment(ctx, t, s, groupAt(5, access.RoleKubernetesViewer, clusterWeb+"/namespaces/blog"))
		web2      = mustCreateAssignment(ctx, t, s, userAt(6, access.RoleClusterUser, "/groups/prod/clusters/web-2"))
		web2Shop  = mustCreateAssignment(ctx, t, s, userAt(7, access.RoleKubernetesViewer, "/groups/prod/clusters/web-2/namespaces/shop"))
		prodEU    = mustCreateAssignment(ctx, t, s, userAt(8, access.RoleReader, "/groups/prod-eu"))
		prodEUWeb = mustCreateAssignment(ctx, t, s, groupAt(9, access.RoleClusterUser, "/groups/prod-eu/clusters/web"))
		devWeb    = mustCreateAssignment(ctx, t, s, newAssignment(10, other, access.PrincipalUser, access.RoleClusterUser, "/groups/dev/clusters/web"))
		we        = mustCreateAssignment(ctx, t, s, userAt(11, access.RoleClusterUser, "/groups/prod/clusters/we"))
		web0      = mustCreateAssignment(ctx, t, s, userAt(12, access.RoleClusterUser, "/groups/prod/clusters/web0"))
		web0NS    = mustCreateAssignment(ctx, t, s, userAt(13, access.RoleKubernetesViewer, "/groups/prod/clusters/web0/namespaces/a"))
		rootGroup = mustCreateAssignment(ctx, t, s, groupAt(14, access.RoleReader, "/"))
		webViewer = mustCreateAssignment(ctx, t, s, userAt(15, access.RoleKubernetesViewer, clusterWeb))
	)
	// Many principal IDs, as for a caller in hundreds of groups.
	many := []string{user}
	for i := range 600 {
		many = append(many, uuid(9, i+1))
	}
	many = append(many, group)

	type A = []store.RoleAssignment
	// Byte-wise, '-' < '/' < '0': "/groups/prod-eu" sorts before
	// "/groups/prod/...", and ".../web-2/..." before ".../web/namespaces/...".
	all := A{rootGroup, root, devWeb, prod, prodEU, prodEUWeb, we, web, webViewer, web2, web2Shop, webBlog, webShop, web0, web0NS}
	tests := []struct {
		name    string
		filter  store.AssignmentFilter
		want    A
		wantErr error
	}{
		{name: "all, by scope, principal, role and ID", filter: store.AssignmentFilter{}, want: all},
		{name: "cluster", filter: store.AssignmentFilter{Scope: clusterWeb}, want: A{web, webViewer}},
		{name: "applying to a cluster", filter: store.AssignmentFilter{Scope: clusterWeb, Above: true}, want: A{rootGroup, root, prod, web, webViewer}},
		{name: "at or below a cluster", filter: store.AssignmentFilter{Scope: clusterWeb, Below: true}, want: A{web, webViewer, webBlog, webShop}},
		{
			name:   "could apply anywhere in a cluster",
			filter: store.AssignmentFilter{Scope: clusterWeb, Above: true, Below: true},
			want:   A{rootGroup, root, prod, web, webViewer, webBlog, webShop},
		},
		{
			name:   "could apply anywhere in a cluster, to a caller and its groups",
			filter: store.AssignmentFilter{Scope: clusterWeb, Above: true, Below: true, PrincipalIDs: []string{user, group}},
			want:   A{rootGroup, root, prod, web, webViewer, webBlog, webShop},
		},
		{
			name:   "could apply anywhere in a cluster, to a caller only",
			filter: store.AssignmentFilter{Scope: clusterWeb, Above: true, Below: true, PrincipalIDs: []string{user}},
			want:   A{root, web, webViewer, webShop},
		},
		{
			name:   "could apply anywhere in a cluster, to a caller in 600 groups",
			filter: store.AssignmentFilter{Scope: clusterWeb, Above: true, Below: true, PrincipalIDs: many},
			want:   A{rootGroup, root, prod, web, webViewer, webBlog, webShop},
		},
		{name: "applying to a namespace", filter: store.AssignmentFilter{Scope: nsShop, Above: true}, want: A{rootGroup, root, prod, web, webViewer, webShop}},
		{name: "at or below a namespace", filter: store.AssignmentFilter{Scope: nsShop, Below: true}, want: A{webShop}},
		{name: "group", filter: store.AssignmentFilter{Scope: "/groups/prod"}, want: A{prod}},
		{name: "at or below a group", filter: store.AssignmentFilter{Scope: "/groups/prod", Below: true}, want: A{prod, we, web, webViewer, web2, web2Shop, webBlog, webShop, web0, web0NS}},
		{name: "applying to a group", filter: store.AssignmentFilter{Scope: "/groups/prod-eu", Above: true}, want: A{rootGroup, root, prodEU}},
		{name: "root", filter: store.AssignmentFilter{Scope: "/"}, want: A{rootGroup, root}},
		{name: "applying to the root", filter: store.AssignmentFilter{Scope: "/", Above: true}, want: A{rootGroup, root}},
		{name: "at or below the root", filter: store.AssignmentFilter{Scope: "/", Below: true}, want: all},
		{name: "applying to a scope without assignments", filter: store.AssignmentFilter{Scope: "/groups/staging/clusters/db", Above: true}, want: A{rootGroup, root}},
		{name: "below a scope without assignments", filter: store.AssignmentFilter{Scope: "/groups/staging", Below: true}, want: nil},
		{name: "a principal", filter: store.AssignmentFilter{PrincipalIDs: []string{other}}, want: A{devWeb}},
		{name: "a principal twice", filter: store.AssignmentFilter{PrincipalIDs: []string{other, other}}, want: A{devWeb}},
		{name: "a group", filter: store.AssignmentFilter{PrincipalIDs: []string{group}}, want: A{rootGroup, prod, prodEUWeb, webBlog}},
		{name: "an unknown principal", filter: store.AssignmentFilter{PrincipalIDs: []string{pid(4)}}, want: nil},
		{name: "empty principal list", filter: store.AssignmentFilter{PrincipalIDs: []string{}}, want: all},
		{name: "above without scope", filter: store.AssignmentFilter{Above: true}, wantErr: store.ErrInvalid},
		{name: "below without scope", filter: store.AssignmentFilter{Below: true}, wantErr: store.ErrInvalid},
		{name: "malformed scope", filter: store.AssignmentFilter{Scope: "/groups/prod/"}, wantErr: store.ErrInvalid},
		{name: "cluster ID without the groups", filter: store.AssignmentFilter{Scope: "prod/web"}, wantErr: store.ErrInvalid},
		{name: "malformed principal ID", filter: store.AssignmentFilter{PrincipalIDs: []string{user, "devs"}}, wantErr: store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRoleAssignments(t.Context(), tt.filter)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListRoleAssignments = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListRoleAssignments mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testDeleteRoleAssignment(t *testing.T, s store.Store) {
	ctx := t.Context()
	first := mustCreateAssignment(ctx, t, s, newAssignment(1, pid(1), access.PrincipalUser, access.RoleClusterUser, clusterWeb))
	second := mustCreateAssignment(ctx, t, s, newAssignment(2, pid(1), access.PrincipalUser, access.RoleKubernetesViewer, clusterWeb))

	// Applied in order.
	tests := []struct {
		name    string
		id      string
		wantErr error
		want    []store.RoleAssignment // all afterwards
	}{
		{"first", first.ID, nil, []store.RoleAssignment{second}},
		{"first again", first.ID, store.ErrNotFound, []store.RoleAssignment{second}},
		{"unknown", aid(3), store.ErrNotFound, []store.RoleAssignment{second}},
		{"malformed", "a-2", store.ErrInvalid, []store.RoleAssignment{second}},
		{"second", second.ID, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.DeleteRoleAssignment(t.Context(), tt.id); !errors.Is(err, tt.wantErr) {
				t.Errorf("DeleteRoleAssignment = %v, want %v", err, tt.wantErr)
			}
			got, err := s.ListRoleAssignments(t.Context(), store.AssignmentFilter{})
			if err != nil {
				t.Fatalf("ListRoleAssignments: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("assignments afterwards (-want +got):\n%s", diff)
			}
		})
	}
	// An identical assignment may be made again once deleted.
	mustCreateAssignment(ctx, t, s, newAssignment(3, pid(1), access.PrincipalUser, access.RoleClusterUser, clusterWeb))
}
