package hub

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/test/oidcprovider"
)

// TestAdminAPIRoles signs people and a service principal in at a real OIDC
// provider, which the hub takes for its embedded issuer (so their groups
// come from the hub's directory), and checks that their role assignments
// decide what they may do on the admin API.
func TestAdminAPIRoles(t *testing.T) {
	ctx := context.Background()
	names := []string{"owner", "reader", "contrib", "grouped", "nobody"}
	var users []oidcprovider.User
	for _, n := range names {
		users = append(users, oidcprovider.User{Username: n, Password: n + "-pw"})
	}
	robot := oidcprovider.Client{ID: oidcprovider.NameUUID("robot-app"), Secret: "robot-secret"}
	p, v := startProvider(t, oidcprovider.Config{Users: users, Clients: []oidcprovider.Client{robot}})
	f := newFixtureConfig(t, func(c *Config) { c.Verifier, c.EmbeddedIssuer = v, p.Issuer })

	// The directory holds the provider's principals under their object IDs.
	id := map[string]string{}
	tok := map[string]string{"admin": adminToken}
	now := f.clock()
	for _, u := range users {
		id[u.Username] = oidcprovider.NameUUID("user/" + u.Username)
		if err := f.hub.cfg.Store.CreatePrincipal(ctx, store.Principal{ID: id[u.Username], Type: access.PrincipalUser, DisplayName: u.Username, LoginName: u.Username, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		ts, err := p.UserToken(ctx, u.Username, u.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		tok[u.Username] = ts.AccessToken
	}
	id["robot"] = oidcprovider.NameUUID("client/" + robot.ID)
	if err := f.hub.cfg.Store.CreatePrincipal(ctx, store.Principal{ID: id["robot"], Type: access.PrincipalServicePrincipal, DisplayName: "robot", ClientID: robot.ID, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	robotToken, err := p.ClientCredentialsToken(ctx, robot.ID, robot.Secret, oidcprovider.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	tok["robot"] = robotToken

	for _, c := range []string{"prod/a", "prod/b", "dev/c"} {
		g, n, _ := strings.Cut(c, "/")
		f.createCluster(t, g, n)
	}
	operators := mustGroup(t, f, "operators")
	assign := func(who, role, typ, scope string) AssignmentView {
		return must[AssignmentView](t, f, "POST", "/api/v1/role-assignments", adminToken, AssignmentRequest{Role: role, Assignee: who, AssigneeType: typ, Scope: scope}, 201)
	}
	assign(id["owner"], "Owner", "user", "/")
	assign(id["reader"], "Reader", "user", "/")
	contribAssignment := assign(id["contrib"], "Contributor", "user", "/groups/dev")
	assign(operators.ID, "Reader", "group", "/groups/prod/clusters/a")
	assign(id["robot"], "Contributor", "servicePrincipal", "/groups/prod")

	listClusters := func(who string) []string {
		var ids []string
		for _, c := range must[[]ClusterView](t, f, "GET", "/api/v1/clusters", tok[who], nil, 200) {
			ids = append(ids, c.ID)
		}
		return ids
	}
	t.Run("lists show what the caller may read", func(t *testing.T) {
		a, b, c := "/groups/prod/clusters/a", "/groups/prod/clusters/b", "/groups/dev/clusters/c"
		tests := []struct {
			who             string
			wantClusters    []string
			wantAssignments int
		}{
			{who: "admin", wantClusters: []string{c, a, b}, wantAssignments: 5},
			{who: "reader", wantClusters: []string{c, a, b}, wantAssignments: 5},
			{who: "contrib", wantClusters: []string{c}, wantAssignments: 1},
			{who: "robot", wantClusters: []string{a, b}, wantAssignments: 2},
			{who: "nobody"},
		}
		for _, tt := range tests {
			t.Run(tt.who, func(t *testing.T) {
				if diff := cmp.Diff(tt.wantClusters, listClusters(tt.who)); diff != "" {
					t.Errorf("clusters (-want +got):\n%s", diff)
				}
				got := must[[]AssignmentView](t, f, "GET", "/api/v1/role-assignments", tok[tt.who], nil, 200)
				if len(got) != tt.wantAssignments {
					t.Errorf("sees %d assignments, want %d: %+v", len(got), tt.wantAssignments, got)
				}
			})
		}
	})

	t.Run("a group's assignment counts for its members, from the next request", func(t *testing.T) {
		path := "/api/v1/groups/prod/clusters/a"
		wantStatus(t, f, "GET", path, tok["grouped"], nil, 403, "Reader")
		must[struct{}](t, f, "POST", "/api/v1/groups/operators/members", tok["owner"], MemberRequest{MemberID: id["grouped"]}, 204)
		must[ClusterView](t, f, "GET", path, tok["grouped"], nil, 200)
		if diff := cmp.Diff([]string{"/groups/prod/clusters/a"}, listClusters("grouped")); diff != "" {
			t.Errorf("clusters (-want +got):\n%s", diff)
		}
		me := must[MeView](t, f, "GET", "/api/v1/me", tok["grouped"], nil, 200)
		want := MeView{PrincipalView: PrincipalView{ID: id["grouped"], DisplayName: "grouped", Type: "user", UserPrincipalName: "grouped", CreatedAt: now.UTC().Truncate(time.Microsecond)},
			Issuer: p.Issuer, Groups: []string{operators.ID}}
		if diff := cmp.Diff(want, me); diff != "" {
			t.Errorf("me (-want +got):\n%s", diff)
		}
		must[struct{}](t, f, "DELETE", "/api/v1/groups/operators/members/"+id["grouped"], tok["owner"], nil, 204)
		wantStatus(t, f, "GET", path, tok["grouped"], nil, 403, "Reader")
	})

	t.Run("me of a service principal", func(t *testing.T) {
		me := must[MeView](t, f, "GET", "/api/v1/me", tok["robot"], nil, 200)
		if me.ID != id["robot"] || me.Type != "servicePrincipal" || me.AppID != robot.ID {
			t.Errorf("me %+v: want the robot's object ID, type servicePrincipal, its app ID", me)
		}
	})

	newUser := UserRequest{DisplayName: "New", LoginName: "new", Password: "a long enough password"}
	tests := []struct {
		name   string
		who    string
		method string
		path   string
		body   any
		code   int
		msgs   []string // for refusals: what the Status message names
	}{
		{name: "the admin token may do anything", who: "admin", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "lab", Name: "x"}, code: 201},
		{name: "Reader may read clusters", who: "reader", method: "GET", path: "/api/v1/groups/prod/clusters/a", code: 200},
		{name: "Reader may read the directory", who: "reader", method: "GET", path: "/api/v1/users", code: 200},
		{name: "Reader may not create clusters", who: "reader", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "dev", Name: "x"}, code: 403,
			msgs: []string{id["reader"], "clusters/write", "/groups/dev", `"Contributor"`}},
		{name: "Reader may not create users", who: "reader", method: "POST", path: "/api/v1/users", body: newUser, code: 403,
			msgs: []string{"principals/write", `"Owner"`}},
		{name: "Contributor creates clusters in its group", who: "contrib", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "dev", Name: "new"}, code: 201},
		{name: "Reader may not delete clusters", who: "reader", method: "DELETE", path: "/api/v1/groups/dev/clusters/new", code: 403,
			msgs: []string{id["reader"], "clusters/delete", "/groups/dev/clusters/new", `"Contributor"`}},
		{name: "Contributor may not delete clusters in another group", who: "contrib", method: "DELETE", path: "/api/v1/groups/prod/clusters/a", code: 403,
			msgs: []string{"clusters/delete", "/groups/prod/clusters/a"}},
		{name: "Contributor deletes clusters in its group", who: "contrib", method: "DELETE", path: "/api/v1/groups/dev/clusters/new", code: 204},
		{name: "Contributor issues join tokens in its group", who: "contrib", method: "POST", path: "/api/v1/groups/dev/clusters/c/join-tokens", code: 201},
		{name: "Contributor may not create clusters in another group", who: "contrib", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "prod", Name: "new"}, code: 403,
			msgs: []string{id["contrib"], "clusters/write", "/groups/prod", `"Contributor"`}},
		{name: "Contributor may not issue join tokens in another group", who: "contrib", method: "POST", path: "/api/v1/groups/prod/clusters/a/join-tokens", code: 403,
			msgs: []string{"/groups/prod/clusters/a"}},
		{name: "Contributor may not create assignments", who: "contrib", method: "POST", path: "/api/v1/role-assignments",
			body: AssignmentRequest{Role: "Reader", Assignee: id["nobody"], Scope: "/groups/dev"}, code: 403, msgs: []string{"assignments/write", `"Owner"`}},
		{name: "Contributor may not delete assignments", who: "contrib", method: "DELETE", path: "/api/v1/role-assignments/" + contribAssignment.ID, code: 403,
			msgs: []string{"assignments/write", `"Owner"`}},
		{name: "the directory is at the root: a group's Contributor may not read it", who: "contrib", method: "GET", path: "/api/v1/groups", code: 403,
			msgs: []string{"principals/read at /:", `"Reader"`}},
		{name: "Contributor may not change the directory", who: "contrib", method: "POST", path: "/api/v1/groups", body: GroupRequest{DisplayName: "x"}, code: 403,
			msgs: []string{"principals/write at /:", `"Owner"`}},
		{name: "a service principal with Contributor creates clusters", who: "robot", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "prod", Name: "bot"}, code: 201},
		{name: "Owner manages the directory", who: "owner", method: "POST", path: "/api/v1/users", body: newUser, code: 201},
		{name: "Owner creates assignments", who: "owner", method: "POST", path: "/api/v1/role-assignments",
			body: AssignmentRequest{Role: "Reader", Assignee: id["contrib"], Scope: "/groups/prod"}, code: 201},
		{name: "Owner deletes assignments", who: "owner", method: "DELETE", path: "/api/v1/role-assignments/" + contribAssignment.ID, code: 204},
		{name: "no role: refused, naming the role", who: "nobody", method: "GET", path: "/api/v1/groups/prod/clusters/a", code: 403,
			msgs: []string{id["nobody"], "clusters/read", "/groups/prod/clusters/a", `"Reader"`, "tether role assignment create"}},
		{name: "no role: no directory", who: "nobody", method: "GET", path: "/api/v1/users", code: 403, msgs: []string{"principals/read", `"Reader"`}},
		{name: "no role: role definitions still", who: "nobody", method: "GET", path: "/api/v1/role-definitions", code: 200},
		{name: "no role: who am I still", who: "nobody", method: "GET", path: "/api/v1/me", code: 200},
		{name: "a malformed request is answered before the roles", who: "nobody", method: "GET", path: "/api/v1/groups/Prod/clusters/a", code: 404, msgs: []string{"no cluster"}},
		{name: "no token", method: "GET", path: "/api/v1/clusters", code: 401, msgs: []string{"tether login", "admin token"}},
		{name: "a forged token", who: "forged", method: "GET", path: "/api/v1/clusters", code: 401, msgs: []string{"refused", "sign in again (tether login)"}},
	}
	tok["forged"] = forge(tok["reader"])
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.msgs != nil {
				wantStatus(t, f, tt.method, tt.path, tok[tt.who], tt.body, tt.code, tt.msgs...)
				return
			}
			if code, body := f.call(t, tt.method, tt.path, tok[tt.who], tt.body); code != tt.code {
				t.Errorf("status %d, want %d: %s", code, tt.code, body)
			}
		})
	}
	t.Run("a deleted principal's token is refused", func(t *testing.T) {
		must[struct{}](t, f, "DELETE", "/api/v1/users/"+id["nobody"], tok["owner"], nil, http.StatusNoContent)
		wantStatus(t, f, "GET", "/api/v1/me", tok["nobody"], nil, 401, "no longer exists", "sign in again")
	})
}
