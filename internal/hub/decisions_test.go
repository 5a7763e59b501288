package hub

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/test/oidcprovider"
)

// outageStore is a real store that can be made to fail as an unreachable
// database does, for the reads of a signed-in request.
type outageStore struct {
	store.Store
	down atomic.Bool
}

func (s *outageStore) fail() error {
	if s.down.Load() {
		return store.ErrUnavailable
	}
	return nil
}

func (s *outageStore) GetCluster(ctx context.Context, id string) (store.Cluster, error) {
	if err := s.fail(); err != nil {
		return store.Cluster{}, err
	}
	return s.Store.GetCluster(ctx, id)
}

func (s *outageStore) ListRoleAssignments(ctx context.Context, f store.AssignmentFilter) ([]store.RoleAssignment, error) {
	if err := s.fail(); err != nil {
		return nil, err
	}
	return s.Store.ListRoleAssignments(ctx, f)
}

func TestSignedInWhileStoreIsDown(t *testing.T) {
	ctx := context.Background()
	alice := oidcprovider.User{Username: "alice", Password: "alice-pw"}
	p, v := startProvider(t, oidcprovider.Config{Users: []oidcprovider.User{alice}})
	var st *outageStore
	f := newFixtureConfig(t, func(c *Config) {
		c.Verifier = v
		st = &outageStore{Store: c.Store}
		c.Store = st
	})
	api := newAPIServer(t)
	kube := f.createCluster(t, "prod", "kube-rbac")
	runAgent(t, f, api, kube.Join.JoinToken, t.TempDir())
	waitConnected(t, f, kube.Cluster.ID)
	code, body := f.call(t, "POST", "/api/v1/role-assignments", adminToken,
		AssignmentRequest{Role: "Cluster User", Assignee: oidcprovider.NameUUID("user/alice"), AssigneeType: "user", Scope: "/groups/prod"})
	if code != http.StatusCreated {
		t.Fatalf("assign: %d %s", code, body)
	}
	token := func() string {
		tok, err := p.UserToken(ctx, alice.Username, alice.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	first, second := token(), token()
	if first == second {
		t.Fatal("the provider issued the same token twice")
	}
	get := func(tok string) (int, string, string) {
		req, _ := http.NewRequest("GET", f.srv.URL+"/k8s/prod/kube-rbac/api/v1/pods", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
	}

	if code, body, _ := get(first); code != http.StatusOK {
		t.Fatalf("store up: %d %s", code, body)
	}
	st.down.Store(true)
	if code, body, _ := get(first); code != http.StatusOK {
		t.Errorf("store down, same token and cluster as a minute ago: %d %s, want 200 on the recent decision", code, body)
	}
	code2, body2, retry := get(second)
	if code2 != http.StatusServiceUnavailable || !strings.Contains(body2, "store is unavailable") || retry == "" {
		t.Errorf("store down, a token never decided: %d %q Retry-After %q; want 503 naming the store, with Retry-After", code2, body2, retry)
	}
	now := f.clock()
	f.advance(decisionsStaleFor)
	if code, _, _ := get(first); code != http.StatusServiceUnavailable {
		t.Errorf("store down, a decision %s old: %d, want 503", decisionsStaleFor, code)
	}
	f.set(now) // the agent checks the hub's assertions against the real clock
	st.down.Store(false)
	if code, body, _ := get(second); code != http.StatusOK {
		t.Errorf("store back: %d %s", code, body)
	}
}
