package access_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

// decisionCase is a principal, its assignments and an action, decoded from
// fuzz bytes over a small vocabulary (so that the fuzzer finds valid
// assignments) plus two raw strings: target, the cluster ID or scope asked
// about, and extra, which may stand for any ID, type, role or scope.
type decisionCase struct {
	p           access.Principal
	assignments []access.Assignment
	action      access.Action
}

func decodeDecisionCase(spec []byte, target, extra string) decisionCase {
	next := func() int {
		if len(spec) == 0 {
			return 0
		}
		b := spec[0]
		spec = spec[1:]
		return int(b)
	}
	pick := func(vocab ...string) string { return vocab[next()%len(vocab)] }
	ids := []string{alice, bob, devs, ops, extra}
	types := []string{string(access.PrincipalUser), string(access.PrincipalServicePrincipal), string(access.PrincipalGroup), extra}
	var c decisionCase
	c.p.ID = pick(ids...)
	c.p.Type = access.PrincipalType(pick(types...))
	for i, g := range []string{devs, ops, extra, alice} {
		if next()&(1<<i) != 0 {
			c.p.Groups = append(c.p.Groups, g)
		}
	}
	var actions []string
	for _, a := range access.Actions() {
		actions = append(actions, string(a))
	}
	c.action = access.Action(pick(append(actions, extra)...))
	var roles []string
	for _, r := range access.RoleDefinitions() {
		roles = append(roles, r.ID)
	}
	roles = append(roles, "Cluster User", extra)
	parent := target
	if i := strings.LastIndex(parent, "/clusters/"); i > 0 {
		parent = parent[:i]
	}
	scopes := []string{"/", "/groups/prod", cluster, namespace, "/groups/prod/clusters/api", "/groups/dev/clusters/web",
		"/groups/prod/clusters/web/namespaces/kube-system", target, target + "/namespaces/shop", parent, extra}
	for len(spec) >= 4 {
		c.assignments = append(c.assignments, access.Assignment{
			ID:            "fuzz",
			PrincipalID:   pick(ids...),
			PrincipalType: access.PrincipalType(pick(types...)),
			RoleID:        pick(roles...),
			Scope:         pick(scopes...),
		})
	}
	return c
}

// The oracle: the rules of doc.go, written again over plain strings.

func validScope(s string) bool { return scopeRE.MatchString(s) }

func validObjectID(s string) bool {
	return objectIDRE.MatchString(s) && s != "00000000-0000-0000-0000-000000000000"
}

// scopeLevel counts a valid scope's levels: 1 for "/", 4 for a namespace.
func scopeLevel(s string) access.Level {
	if s == "/" {
		return access.LevelRoot
	}
	return access.Level(1 + strings.Count(s, "/")/2)
}

func containsScope(outer, inner string) bool {
	return outer == "/" || outer == inner || strings.HasPrefix(inner, outer+"/")
}

func roleOf(id string) (access.Role, bool) {
	for _, r := range access.RoleDefinitions() {
		if r.ID == id {
			return r, true
		}
	}
	return access.Role{}, false
}

// grants returns the roles and scopes of the valid assignments that apply
// to p.
func grants(p access.Principal, as []access.Assignment) (roles []access.Role, scopes []string) {
	for _, a := range as {
		r, ok := roleOf(a.RoleID)
		applies := (a.PrincipalType == access.PrincipalUser || a.PrincipalType == access.PrincipalServicePrincipal) && a.PrincipalID == p.ID ||
			a.PrincipalType == access.PrincipalGroup && slices.Contains(p.Groups, a.PrincipalID)
		if !applies || !ok || !validObjectID(a.PrincipalID) || !validScope(a.Scope) || !slices.Contains(r.Levels, scopeLevel(a.Scope)) {
			continue
		}
		roles, scopes = append(roles, r), append(scopes, a.Scope)
	}
	return roles, scopes
}

func canSignIn(p access.Principal) bool {
	return validObjectID(p.ID) && (p.Type == access.PrincipalUser || p.Type == access.PrincipalServicePrincipal)
}

// FuzzDecisions checks Connect, Authorize and KubernetesGroups against the
// rules restated over strings: a decision allows only through a valid
// assignment that applies to the principal, grants the action, and sits at
// the scope asked about or above it, so an assignment for one cluster never
// allows another; role groups come only from Kubernetes roles at the
// cluster, above it, or at one of its own namespaces.
func FuzzDecisions(f *testing.F) {
	for _, seed := range []struct {
		spec          string
		target, extra string
	}{
		// Each spec: principal ID, type, groups (bit mask), action; then per
		// assignment: principal ID, type, role, scope (indexes into the
		// vocabularies of decodeDecisionCase).
		{"\x00\x00\x00\x03" + "\x00\x00\x01\x02", cluster, ""},                                     // Cluster User at the cluster
		{"\x00\x00\x01\x03" + "\x02\x02\x01\x01", cluster, ""},                                     // through devs, at /groups/prod
		{"\x00\x00\x00\x03" + "\x00\x00\x01\x02", "/groups/prod/clusters/web2", ""},                // another cluster
		{"\x00\x00\x00\x03" + "\x00\x00\x01\x02", "/groups/prod/clusters/web/", ""},                // trailing slash
		{"\x00\x00\x00\x00" + "\x00\x00\x02\x04", cluster, ""},                                     // Viewer at another cluster
		{"\x00\x00\x00\x00" + "\x00\x00\x03\x03" + "\x00\x00\x02\x02", cluster, ""},                // Writer at a namespace, Viewer at the cluster
		{"\x00\x00\x00\x00" + "\x00\x00\x04\x08" + "\x00\x00\x05\x08", cluster, ""},                // Admin, and Cluster Admin (invalid), at a namespace
		{"\x00\x00\x00\x03" + "\x00\x00\x01\x0a", cluster, "/groups/prod/"},                        // a malformed scope grants nothing
		{"\x04\x00\x00\x03" + "\x04\x00\x01\x02", cluster, "3F2A0C4E-8B1D-4E5F-9A6B-7C8D9E0F1A2B"}, // an upper-case ID
		{"\x00\x00\x00\x03" + "\x00\x00\x01\x07", namespace, ""},                                   // not a cluster ID
		{"\x00\x00\x00\x08" + "\x00\x00\x07\x00", "/", "clusters/*"},                               // an unknown action
		{"\x00\x00\x04\x05" + "\x04\x02\x07\x01", "/groups/prod", "system:masters"},                // a group that is no object ID
		{"\x00\x00\x00\x03" + "\x00\x02\x07\x00", cluster, ""},                                     // a group assignment to alice's own ID
		{"\x02\x02\x00\x03" + "\x02\x02\x07\x00", cluster, ""},                                     // a group cannot sign in
		{"\x00\x00\x00\x03" + "\x00\x00\x08\x02", cluster, ""},                                     // a role name, not an ID
	} {
		f.Add([]byte(seed.spec), seed.target, seed.extra)
	}
	f.Fuzz(func(t *testing.T, spec []byte, target, extra string) {
		c := decodeDecisionCase(spec, target, extra)
		roles, scopes := grants(c.p, c.assignments)
		allows := func(action access.Action, at string) bool {
			for i, r := range roles {
				if r.Allows(action) && containsScope(scopes[i], at) {
					return true
				}
			}
			return false
		}
		isCluster := validScope(target) && scopeLevel(target) == access.LevelCluster

		checkDecision := func(what string, d access.Decision, want bool) {
			t.Helper()
			if d.Allowed != want {
				t.Fatalf("%s = %+v, want allowed %v; principal %+v, assignments %+v", what, d, want, c.p, c.assignments)
			}
			if d.Allowed && (d.Message != "" || d.Grant == "") || !d.Allowed && (d.Message == "" || d.Grant != "") {
				t.Fatalf("%s = %+v: an allowed decision has a grant and no message, a denial the reverse", what, d)
			}
			if len(d.Message) > 2048 {
				t.Fatalf("%s: a message of %d bytes", what, len(d.Message))
			}
		}
		checkDecision("Connect", access.Connect(c.p, target, c.assignments),
			isCluster && canSignIn(c.p) && allows(access.ActionClustersConnect, target))
		checkDecision("Authorize", access.Authorize(c.p, target, c.action, c.assignments),
			validScope(target) && slices.Contains(access.Actions(), c.action) && canSignIn(c.p) && allows(c.action, target))

		var want []string
		if isCluster && canSignIn(c.p) {
			for i, r := range roles {
				switch {
				case r.ClusterRole == "":
				case containsScope(scopes[i], target):
					want = append(want, "tether:cluster:"+r.ClusterRole)
				case strings.HasPrefix(scopes[i], target+"/namespaces/"):
					want = append(want, "tether:namespace:"+strings.TrimPrefix(scopes[i], target+"/namespaces/")+":"+r.ClusterRole)
				}
			}
			slices.Sort(want)
			want = slices.Compact(want)
		}
		got := access.KubernetesGroups(c.p, target, c.assignments)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("KubernetesGroups(%+v, %q, %+v) (-want +got):\n%s", c.p, target, c.assignments, diff)
		}
		for _, g := range got {
			if !strings.HasPrefix(g, access.ClusterGroupPrefix) && !strings.HasPrefix(g, access.NamespaceGroupPrefix) {
				t.Fatalf("KubernetesGroups returned %q, not a role group", g)
			}
		}
	})
}
