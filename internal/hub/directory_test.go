package hub

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/issuer"
)

// must sends a request, fails the test unless the answer has wantCode,
// and decodes a JSON answer into a T.
func must[T any](t *testing.T, f *fixture, method, path, token string, body any, wantCode int) T {
	t.Helper()
	code, b := f.call(t, method, path, token, body)
	if code != wantCode {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, wantCode, b)
	}
	var v T
	if len(b) > 0 && code != http.StatusNoContent {
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return v
}

// wantStatus checks that a request is answered with code and a Status
// whose message mentions each of msgs.
func wantStatus(t *testing.T, f *fixture, method, path, token string, body any, code int, msgs ...string) {
	t.Helper()
	got, b := f.call(t, method, path, token, body)
	if got != code {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, got, code, b)
	}
	msg := statusMessage(t, b)
	for _, m := range msgs {
		if !strings.Contains(msg, m) {
			t.Errorf("%s %s: message %q does not mention %q", method, path, msg, m)
		}
	}
}

// refusal is a request the hub must answer, with the admin token, with
// code and a Status message that mentions msg.
type refusal struct {
	name, method, path string
	body               any
	code               int
	msg                string
}

func checkRefusals(t *testing.T, f *fixture, tests []refusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, f, tt.method, tt.path, adminToken, tt.body, tt.code, tt.msg)
		})
	}
}

func TestDirectoryUsers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	created := must[CreatedUser](t, f, "POST", "/api/v1/users", adminToken, UserRequest{DisplayName: "Alice", LoginName: "Alice@Example.com"}, 201)
	if created.Password == "" || created.Type != "user" || created.UserPrincipalName != "Alice@Example.com" {
		t.Fatalf("created user %+v: want a generated password, type user, the login name", created)
	}
	stored, err := f.hub.cfg.Store.GetUserByLogin(ctx, "alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := issuer.CheckPassword(stored.PasswordHash, created.Password); !ok || err != nil {
		t.Fatalf("the generated password does not match the stored hash: %v", err)
	}
	chosen := must[CreatedUser](t, f, "POST", "/api/v1/users", adminToken, UserRequest{DisplayName: "Bob", LoginName: "bob", Password: "correct horse battery"}, 201)
	if chosen.Password != "" {
		t.Errorf("a chosen password came back: %q", chosen.Password)
	}

	t.Run("show by object ID or login name, any case", func(t *testing.T) {
		for _, ref := range []string{created.ID, "alice@example.com", "ALICE@EXAMPLE.COM"} {
			got := must[PrincipalView](t, f, "GET", "/api/v1/users/"+ref, adminToken, nil, 200)
			if diff := cmp.Diff(created.PrincipalView, got); diff != "" {
				t.Errorf("show %s (-want +got):\n%s", ref, diff)
			}
		}
	})
	t.Run("list", func(t *testing.T) {
		got := must[[]PrincipalView](t, f, "GET", "/api/v1/users", adminToken, nil, 200)
		if diff := cmp.Diff([]PrincipalView{created.PrincipalView, chosen.PrincipalView}, got); diff != "" {
			t.Errorf("list (-want +got):\n%s", diff)
		}
	})
	t.Run("update", func(t *testing.T) {
		name := "Alice Liddell"
		got := must[PrincipalView](t, f, "PATCH", "/api/v1/users/alice@example.com", adminToken, UserUpdate{DisplayName: &name}, 200)
		if got.DisplayName != name {
			t.Errorf("renamed to %q, want %q", got.DisplayName, name)
		}
		short, none := "short", ""
		wantStatus(t, f, "PATCH", "/api/v1/users/"+created.ID, adminToken, UserUpdate{Password: &short}, 400, "at least")
		must[PrincipalView](t, f, "PATCH", "/api/v1/users/"+created.ID, adminToken, UserUpdate{Password: &none}, 200)
		if p, _ := f.hub.cfg.Store.GetUserByLogin(ctx, "alice@example.com"); p.PasswordHash != nil {
			t.Errorf("password \"\" did not remove the password")
		}
	})

	checkRefusals(t, f, []refusal{
		{name: "duplicate login name, other case", method: "POST", path: "/api/v1/users", body: UserRequest{DisplayName: "A", LoginName: "ALICE@example.com"}, code: 409, msg: "tether ad user show"},
		{name: "no login name", method: "POST", path: "/api/v1/users", body: UserRequest{DisplayName: "A"}, code: 400, msg: "login name is required"},
		{name: "short password", method: "POST", path: "/api/v1/users", body: UserRequest{DisplayName: "C", LoginName: "c", Password: "short"}, code: 400, msg: "at least"},
		{name: "unknown field", method: "POST", path: "/api/v1/users", body: map[string]string{"displayName": "D", "userName": "d"}, code: 400, msg: "loginName"},
		{name: "unknown user", method: "GET", path: "/api/v1/users/nobody@example.com", code: 404, msg: "tether ad user list"},
		{name: "a group is no user", method: "GET", path: "/api/v1/users/" + mustGroup(t, f, "G").ID, code: 404, msg: "no user"},
	})

	t.Run("delete", func(t *testing.T) {
		must[struct{}](t, f, "DELETE", "/api/v1/users/bob", adminToken, nil, 204)
		wantStatus(t, f, "GET", "/api/v1/users/"+chosen.ID, adminToken, nil, 404, "no user")
	})
}

func mustGroup(t *testing.T, f *fixture, name string) PrincipalView {
	t.Helper()
	return must[PrincipalView](t, f, "POST", "/api/v1/groups", adminToken, GroupRequest{DisplayName: name}, 201)
}

func TestDirectoryServicePrincipals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	sp := must[CreatedServicePrincipal](t, f, "POST", "/api/v1/service-principals", adminToken, ServicePrincipalRequest{DisplayName: "deployer"}, 201)
	if sp.AppID == "" || sp.AppID == sp.ID || sp.Type != "servicePrincipal" || !strings.HasPrefix(sp.Password, issuer.ClientSecretPrefix) {
		t.Fatalf("created %+v: want distinct object and client IDs and a client secret", sp)
	}
	if want := f.clock().Truncate(time.Microsecond).AddDate(1, 0, 0); !sp.ExpiresAt.Equal(want) {
		t.Errorf("first secret expires %s, want a year on, %s", sp.ExpiresAt, want)
	}
	_, secrets, err := f.hub.cfg.Store.FindClientSecrets(ctx, sp.AppID, f.clock())
	if err != nil || !issuer.MatchClientSecret(sp.Password, secrets) {
		t.Fatalf("the returned secret does not sign in: %v", err)
	}

	t.Run("show by object ID or client ID", func(t *testing.T) {
		for _, ref := range []string{sp.ID, sp.AppID} {
			got := must[PrincipalView](t, f, "GET", "/api/v1/service-principals/"+ref, adminToken, nil, 200)
			if diff := cmp.Diff(sp.PrincipalView, got); diff != "" {
				t.Errorf("show %s (-want +got):\n%s", ref, diff)
			}
		}
	})
	t.Run("secrets", func(t *testing.T) {
		base := "/api/v1/service-principals/" + sp.AppID + "/secrets"
		first := f.clock().UTC().Truncate(time.Microsecond)
		f.advance(time.Minute)
		second := must[NewCredential](t, f, "POST", base, adminToken, SecretRequest{Description: "ci", Years: 2}, 201)
		if second.AppID != sp.AppID || second.Password == sp.Password || !second.ExpiresAt.Equal(f.clock().Truncate(time.Microsecond).AddDate(2, 0, 0)) {
			t.Errorf("new secret %+v: want the app ID, a new secret, two years", second.AppID)
		}
		code, raw := f.call(t, "GET", base, adminToken, nil)
		if code != 200 || strings.Contains(string(raw), "tcs_") || strings.Contains(strings.ToLower(string(raw)), "hash") {
			t.Fatalf("list: %d %s: want no secret and no hash", code, raw)
		}
		now := f.clock().UTC().Truncate(time.Microsecond)
		want := []SecretView{
			{ID: sp.KeyID, CreatedAt: first, ExpiresAt: first.AddDate(1, 0, 0)},
			{ID: second.KeyID, Description: "ci", CreatedAt: now, ExpiresAt: now.AddDate(2, 0, 0)},
		}
		got := must[[]SecretView](t, f, "GET", base, adminToken, nil, 200)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("secrets (-want +got):\n%s", diff)
		}
		wantStatus(t, f, "POST", base, adminToken, SecretRequest{Years: 11}, 400, "1 to 10 years")
		must[struct{}](t, f, "DELETE", base+"/"+sp.KeyID, adminToken, nil, 204)
		wantStatus(t, f, "DELETE", base+"/"+sp.KeyID, adminToken, nil, 404, "tether ad sp credential list")
	})
	t.Run("delete", func(t *testing.T) {
		must[struct{}](t, f, "DELETE", "/api/v1/service-principals/"+sp.ID, adminToken, nil, 204)
		wantStatus(t, f, "GET", "/api/v1/service-principals/"+sp.AppID, adminToken, nil, 404, "no service principal")
	})
}

func TestDirectoryGroups(t *testing.T) {
	f := newFixture(t)
	user := must[CreatedUser](t, f, "POST", "/api/v1/users", adminToken, UserRequest{DisplayName: "Alice", LoginName: "alice"}, 201)
	team1, team2, ops := mustGroup(t, f, "Team"), mustGroup(t, f, "team"), mustGroup(t, f, "Ops")
	member := func(g, m string) string { return "/api/v1/groups/" + g + "/members/" + m }
	check := func(g, m string) bool {
		return must[CheckResult](t, f, "GET", member(g, m)+"/check", adminToken, nil, 200).Value
	}

	wantStatus(t, f, "GET", "/api/v1/groups/TEAM", adminToken, nil, 409, team1.ID, team2.ID, "object ID")
	if got := must[PrincipalView](t, f, "GET", "/api/v1/groups/ops", adminToken, nil, 200); got.ID != ops.ID {
		t.Errorf("group by name: %s, want %s", got.ID, ops.ID)
	}
	// Alice in Ops, Ops in Team: Alice is in Team through Ops.
	must[struct{}](t, f, "POST", "/api/v1/groups/Ops/members", adminToken, MemberRequest{MemberID: user.ID}, 204)
	must[struct{}](t, f, "POST", "/api/v1/groups/"+team1.ID+"/members", adminToken, MemberRequest{MemberID: ops.ID}, 204)
	if !check(team1.ID, user.ID) || !check("Ops", user.ID) || check(team2.ID, user.ID) {
		t.Errorf("membership checks wrong: want Alice in Team (nested) and Ops, not in the other Team")
	}
	got := must[[]PrincipalView](t, f, "GET", "/api/v1/groups/"+team1.ID+"/members", adminToken, nil, 200)
	if diff := cmp.Diff([]PrincipalView{ops}, got); diff != "" {
		t.Errorf("members (-want +got):\n%s", diff)
	}

	checkRefusals(t, f, []refusal{
		{name: "cycle", method: "POST", path: "/api/v1/groups/Ops/members", body: MemberRequest{MemberID: team1.ID}, code: 409, msg: "cannot contain itself"},
		{name: "already a member", method: "POST", path: "/api/v1/groups/Ops/members", body: MemberRequest{MemberID: user.ID}, code: 409, msg: "already a member"},
		{name: "unknown member", method: "POST", path: "/api/v1/groups/Ops/members", body: MemberRequest{MemberID: "00000000-0000-4000-8000-000000000001"}, code: 404, msg: "no principal"},
		{name: "remove a non-member", method: "DELETE", path: member(team2.ID, user.ID), code: 404, msg: "not a direct member"},
		{name: "check a malformed ID", method: "GET", path: member("Ops", "alice") + "/check", code: 400, msg: "UUID"},
		{name: "unknown group", method: "GET", path: "/api/v1/groups/nope/members", code: 404, msg: "tether ad group list"},
		{name: "no display name", method: "POST", path: "/api/v1/groups", body: GroupRequest{}, code: 400, msg: "display name is required"},
	})

	must[struct{}](t, f, "DELETE", member("Ops", user.ID), adminToken, nil, 204)
	if check(team1.ID, user.ID) {
		t.Errorf("still in Team after leaving Ops")
	}
	must[struct{}](t, f, "DELETE", "/api/v1/groups/"+ops.ID, adminToken, nil, 204)
	wantStatus(t, f, "GET", "/api/v1/groups/Ops", adminToken, nil, 404, "no group")
	wantStatus(t, f, "GET", "/api/v1/me", adminToken, nil, 400, "not a principal")
}
