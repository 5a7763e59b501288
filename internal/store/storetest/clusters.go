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

func testCreateCluster(t *testing.T, s store.Store) {
	long := strings.Repeat("a", store.MaxNameLen)
	tests := []struct {
		name string
		in   store.Cluster
		want store.Cluster
	}{
		{
			name: "defaults",
			in:   newCluster("prod", "web"),
			want: created("prod", "web"),
		},
		{
			name: "hub rbac",
			in:   store.Cluster{Group: "prod", Name: "api", Location: "westeurope", Mode: store.ModeHubRBAC, CreatedAt: t0},
			want: store.Cluster{ID: "/groups/prod/clusters/api", Group: "prod", Name: "api", Location: "westeurope", Mode: store.ModeHubRBAC, CreatedAt: stored(t0)},
		},
		{
			name: "explicit kubernetes rbac, no location",
			in:   store.Cluster{Group: "dev", Name: "k3s-1", Mode: store.ModeKubernetesRBAC, CreatedAt: at(time.Hour)},
			want: store.Cluster{ID: "/groups/dev/clusters/k3s-1", Group: "dev", Name: "k3s-1", Mode: store.ModeKubernetesRBAC, CreatedAt: stored(at(time.Hour))},
		},
		{
			name: "longest names",
			in:   newCluster(long, long),
			want: created(long, long),
		},
		{
			name: "free-text location",
			in:   store.Cluster{Group: "edge", Name: "1", Location: "Frankfurt DC-2 (rack 7)", CreatedAt: t0},
			want: store.Cluster{ID: "/groups/edge/clusters/1", Group: "edge", Name: "1", Location: "Frankfurt DC-2 (rack 7)", Mode: store.ModeKubernetesRBAC, CreatedAt: stored(t0)},
		},
		{
			name: "ID, agent and tunnel are ignored",
			in: store.Cluster{
				ID: "/groups/other/clusters/other", Group: "prod", Name: "db", Location: "eastus2", CreatedAt: t0,
				Agent: store.Agent{PublicKey: []byte("key"), EnrolledAt: t0, Version: "v1", KubernetesVersion: "v1.31.0", LastSeenAt: t0,
					Status: store.AgentStatus{AgentVersion: "v1", NodeCount: 3, LastError: "boom", ReportedAt: t0}},
				Tunnel: store.Tunnel{Replica: "hub-0", ConnectedAt: t0},
			},
			want: created("prod", "db"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.CreateCluster(t.Context(), tt.in)
			if err != nil {
				t.Fatalf("CreateCluster: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("CreateCluster mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, mustGet(t.Context(), t, s, tt.want.ID), opts); diff != "" {
				t.Errorf("GetCluster mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func testCreateClusterInvalid(t *testing.T, s store.Store) {
	with := func(f func(c *store.Cluster)) store.Cluster {
		c := newCluster("prod", "web")
		f(&c)
		return c
	}
	tests := []struct {
		name string
		in   store.Cluster
	}{
		{"empty group", with(func(c *store.Cluster) { c.Group = "" })},
		{"empty name", with(func(c *store.Cluster) { c.Name = "" })},
		{"uppercase name", with(func(c *store.Cluster) { c.Name = "Web" })},
		{"underscore in name", with(func(c *store.Cluster) { c.Name = "my_web" })},
		{"dot in name", with(func(c *store.Cluster) { c.Name = "web.prod" })},
		{"leading hyphen", with(func(c *store.Cluster) { c.Name = "-web" })},
		{"trailing hyphen", with(func(c *store.Cluster) { c.Group = "prod-" })},
		{"slash in group", with(func(c *store.Cluster) { c.Group = "prod/clusters/x" })},
		{"name too long", with(func(c *store.Cluster) { c.Name = strings.Repeat("a", store.MaxNameLen+1) })},
		{"location with newline", with(func(c *store.Cluster) { c.Location = "east\nus" })},
		{"location with leading space", with(func(c *store.Cluster) { c.Location = " eastus" })},
		{"location too long", with(func(c *store.Cluster) { c.Location = strings.Repeat("x", store.MaxLocationLen+1) })},
		{"location not UTF-8", with(func(c *store.Cluster) { c.Location = "east\xffus" })},
		{"unknown mode", with(func(c *store.Cluster) { c.Mode = "admin" })},
		{"zero creation time", with(func(c *store.Cluster) { c.CreatedAt = time.Time{} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateCluster(t.Context(), tt.in)
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("CreateCluster(%+v) = %v, want %v", tt.in, err, store.ErrInvalid)
			}
		})
	}
	got, err := s.ListClusters(t.Context(), store.ClusterFilter{})
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	if diff := cmp.Diff([]store.Cluster(nil), got, opts); diff != "" {
		t.Errorf("ListClusters after invalid creates (-want +got):\n%s", diff)
	}
}

func testCreateClusterConflict(t *testing.T, s store.Store) {
	first := mustCreate(t.Context(), t, s, "prod", "web")
	tests := []struct {
		name    string
		in      store.Cluster
		wantErr error
	}{
		{"same group and name", store.Cluster{Group: "prod", Name: "web", Location: "westus", Mode: store.ModeHubRBAC, CreatedAt: at(time.Hour)}, store.ErrConflict},
		{"same name in another group", newCluster("dev", "web"), nil},
		{"another name in the same group", newCluster("prod", "web-2"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateCluster(t.Context(), tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateCluster = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if diff := cmp.Diff(first, mustGet(t.Context(), t, s, first.ID), opts); diff != "" {
		t.Errorf("conflicting create changed the cluster (-want +got):\n%s", diff)
	}
}

func testGetCluster(t *testing.T, s store.Store) {
	mustCreate(t.Context(), t, s, "prod", "web")
	tests := []struct {
		name    string
		id      string
		wantErr error
	}{
		{"unknown name", "/groups/prod/clusters/api", store.ErrNotFound},
		{"unknown group", "/groups/dev/clusters/web", store.ErrNotFound},
		{"empty", "", store.ErrInvalid},
		{"bare name", "web", store.ErrInvalid},
		{"group and name", "prod/web", store.ErrInvalid},
		{"trailing slash", "/groups/prod/clusters/web/", store.ErrInvalid},
		{"uppercase", "/groups/prod/clusters/WEB", store.ErrInvalid},
		{"extra segment", "/groups/prod/clusters/web/namespaces/default", store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.GetCluster(t.Context(), tt.id)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("GetCluster(%q) = %v, want %v", tt.id, err, tt.wantErr)
			}
		})
	}
}

func testListClusters(t *testing.T, s store.Store) {
	// Created out of order. Byte-wise, '-' sorts before digits and letters,
	// and a group sorts before the longer groups it prefixes, unlike the
	// IDs ("/groups/a-b/..." < "/groups/a/...").
	for _, gn := range [][2]string{{"b", "w"}, {"a-b", "x"}, {"a", "x1"}, {"ab", "x"}, {"a", "x-1"}, {"a", "x"}, {"a", "w"}} {
		mustCreate(t.Context(), t, s, gn[0], gn[1])
	}
	tests := []struct {
		name    string
		filter  store.ClusterFilter
		want    []store.Cluster
		wantErr error
	}{
		{
			name:   "all",
			filter: store.ClusterFilter{},
			want: []store.Cluster{
				created("a", "w"), created("a", "x"), created("a", "x-1"), created("a", "x1"),
				created("a-b", "x"), created("ab", "x"), created("b", "w"),
			},
		},
		{
			name:   "group a",
			filter: store.ClusterFilter{Group: "a"},
			want:   []store.Cluster{created("a", "w"), created("a", "x"), created("a", "x-1"), created("a", "x1")},
		},
		{
			name:   "group a-b",
			filter: store.ClusterFilter{Group: "a-b"},
			want:   []store.Cluster{created("a-b", "x")},
		},
		{
			name:   "group without clusters",
			filter: store.ClusterFilter{Group: "c"},
			want:   nil,
		},
		{
			name:    "invalid group",
			filter:  store.ClusterFilter{Group: "A"},
			want:    nil,
			wantErr: store.ErrInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListClusters(t.Context(), tt.filter)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ListClusters(%+v) = %v, want %v", tt.filter, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListClusters(%+v) mismatch (-want +got):\n%s", tt.filter, diff)
			}
		})
	}
}

func testDeleteCluster(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	api := mustCreate(ctx, t, s, "prod", "api")
	hash := mustCreateToken(ctx, t, s, web.ID, "web-token")
	alice := mustCreatePrincipal(ctx, t, s, newUser(1, "Alice", "alice@example.com")).ID
	for _, a := range []store.RoleAssignment{
		newAssignment(1, alice, access.PrincipalUser, access.RoleClusterUser, web.ID),
		newAssignment(2, alice, access.PrincipalUser, access.RoleKubernetesViewer, web.ID+"/namespaces/shop"),
		newAssignment(3, alice, access.PrincipalUser, access.RoleClusterUser, api.ID),
		newAssignment(4, alice, access.PrincipalUser, access.RoleReader, "/groups/prod"),
	} {
		if err := s.CreateRoleAssignment(ctx, a); err != nil {
			t.Fatalf("CreateRoleAssignment: %v", err)
		}
	}

	if err := s.DeleteCluster(ctx, web.ID); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	left, err := s.ListRoleAssignments(ctx, store.AssignmentFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, a := range left {
		ids = append(ids, a.ID)
	}
	if diff := cmp.Diff([]string{aid(4), aid(3)}, ids); diff != "" { // listed by scope
		t.Errorf("assignments left after deleting the cluster (-want +got):\n%s", diff)
	}
	if _, err := s.GetCluster(ctx, web.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetCluster after delete = %v, want %v", err, store.ErrNotFound)
	}
	if err := s.DeleteCluster(ctx, web.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second DeleteCluster = %v, want %v", err, store.ErrNotFound)
	}
	if err := s.DeleteCluster(ctx, "prod/web"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("DeleteCluster(malformed ID) = %v, want %v", err, store.ErrInvalid)
	}
	got, err := s.ListClusters(ctx, store.ClusterFilter{})
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	if diff := cmp.Diff([]store.Cluster{api}, got, opts); diff != "" {
		t.Errorf("ListClusters after delete (-want +got):\n%s", diff)
	}

	// The token went with its cluster: a new cluster of the same name cannot
	// be enrolled with it, and its hash can be issued again.
	mustCreate(ctx, t, s, "prod", "web")
	if _, err := s.RedeemJoinToken(ctx, hash, at(time.Minute), []byte("key")); !errors.Is(err, store.ErrTokenInvalid) {
		t.Errorf("RedeemJoinToken of a deleted cluster's token = %v, want %v", err, store.ErrTokenInvalid)
	}
	mustCreateToken(ctx, t, s, web.ID, "web-token")
}

func testRecordHeartbeat(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	mustCreateToken(ctx, t, s, web.ID, "web-token")
	if _, err := s.RedeemJoinToken(ctx, hashOf("web-token"), t0, []byte("key")); err != nil {
		t.Fatalf("RedeemJoinToken: %v", err)
	}
	enrolled := func(a store.Agent) store.Cluster {
		c := created("prod", "web")
		a.PublicKey, a.EnrolledAt = []byte("key"), stored(t0)
		c.Agent = a
		return c
	}

	// Applied in order to the same cluster.
	steps := []struct {
		name string
		hb   store.Heartbeat
		want store.Cluster
	}{
		{
			name: "first",
			hb:   store.Heartbeat{AgentVersion: "v0.1.0", KubernetesVersion: "v1.31.2", At: at(time.Minute)},
			want: enrolled(store.Agent{Version: "v0.1.0", KubernetesVersion: "v1.31.2", LastSeenAt: stored(at(time.Minute))}),
		},
		{
			name: "upgrade",
			hb:   store.Heartbeat{AgentVersion: "v0.2.0", KubernetesVersion: "v1.32.0+k3s1", At: at(2 * time.Minute)},
			want: enrolled(store.Agent{Version: "v0.2.0", KubernetesVersion: "v1.32.0+k3s1", LastSeenAt: stored(at(2 * time.Minute))}),
		},
		{
			name: "older time, last call wins",
			hb:   store.Heartbeat{AgentVersion: "v0.2.1", At: at(90 * time.Second)},
			want: enrolled(store.Agent{Version: "v0.2.1", LastSeenAt: stored(at(90 * time.Second))}),
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordHeartbeat(t.Context(), web.ID, tt.hb); err != nil {
				t.Fatalf("RecordHeartbeat: %v", err)
			}
			if diff := cmp.Diff(tt.want, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
				t.Errorf("cluster after heartbeat (-want +got):\n%s", diff)
			}
		})
	}

	errs := []struct {
		name    string
		id      string
		hb      store.Heartbeat
		wantErr error
	}{
		{"unknown cluster", "/groups/prod/clusters/api", store.Heartbeat{At: t0}, store.ErrNotFound},
		{"malformed ID", "prod/web", store.Heartbeat{At: t0}, store.ErrInvalid},
		{"zero time", web.ID, store.Heartbeat{AgentVersion: "v1"}, store.ErrInvalid},
		{"version too long", web.ID, store.Heartbeat{AgentVersion: strings.Repeat("1", store.MaxVersionLen+1), At: t0}, store.ErrInvalid},
		{"control character", web.ID, store.Heartbeat{KubernetesVersion: "v1.31\x00", At: t0}, store.ErrInvalid},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordHeartbeat(t.Context(), tt.id, tt.hb); !errors.Is(err, tt.wantErr) {
				t.Errorf("RecordHeartbeat = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func testRecordHeartbeats(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	api := mustCreate(ctx, t, s, "prod", "api")
	idle := mustCreate(ctx, t, s, "prod", "idle")
	gone := mustCreate(ctx, t, s, "prod", "gone")
	if err := s.DeleteCluster(ctx, gone.ID); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	seen := func(c store.Cluster, version, kube string, at time.Time) store.Cluster {
		c.Agent.Version, c.Agent.KubernetesVersion, c.Agent.LastSeenAt = version, kube, stored(at)
		return c
	}

	// Applied in order.
	steps := []struct {
		name string
		hbs  map[string]store.Heartbeat
		want []store.Cluster // ListClusters: api, idle, web
	}{
		{
			name: "none",
			want: []store.Cluster{api, idle, web},
		},
		{
			name: "two, and a cluster deleted meanwhile is skipped",
			hbs: map[string]store.Heartbeat{
				web.ID:  {AgentVersion: "v0.1.0", KubernetesVersion: "v1.31.2", At: at(time.Minute)},
				api.ID:  {AgentVersion: "v0.2.0", At: at(time.Minute + time.Second)},
				gone.ID: {AgentVersion: "v0.3.0", At: at(time.Minute)},
			},
			want: []store.Cluster{
				seen(api, "v0.2.0", "", at(time.Minute+time.Second)),
				idle,
				seen(web, "v0.1.0", "v1.31.2", at(time.Minute)),
			},
		},
		{
			name: "older time, last call wins; the others stay",
			hbs: map[string]store.Heartbeat{
				web.ID: {AgentVersion: "v0.1.1", KubernetesVersion: "v1.32.0", At: at(30 * time.Second)},
			},
			want: []store.Cluster{
				seen(api, "v0.2.0", "", at(time.Minute+time.Second)),
				idle,
				seen(web, "v0.1.1", "v1.32.0", at(30*time.Second)),
			},
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordHeartbeats(t.Context(), tt.hbs); err != nil {
				t.Fatalf("RecordHeartbeats: %v", err)
			}
			got, err := s.ListClusters(t.Context(), store.ClusterFilter{})
			if err != nil {
				t.Fatalf("ListClusters: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("clusters after the heartbeats (-want +got):\n%s", diff)
			}
		})
	}

	// Nothing is recorded when one is invalid, not even the valid ones.
	before, err := s.ListClusters(ctx, store.ClusterFilter{})
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	valid := store.Heartbeat{AgentVersion: "v9", At: at(time.Hour)}
	errs := []struct {
		name string
		id   string
		hb   store.Heartbeat
	}{
		{"malformed ID", "prod/web", valid},
		{"zero time", api.ID, store.Heartbeat{AgentVersion: "v1"}},
		{"version too long", api.ID, store.Heartbeat{AgentVersion: strings.Repeat("1", store.MaxVersionLen+1), At: t0}},
		{"control character", api.ID, store.Heartbeat{KubernetesVersion: "v1.31\x00", At: t0}},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			hbs := map[string]store.Heartbeat{web.ID: valid, tt.id: tt.hb}
			if err := s.RecordHeartbeats(t.Context(), hbs); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RecordHeartbeats = %v, want %v", err, store.ErrInvalid)
			}
			got, err := s.ListClusters(t.Context(), store.ClusterFilter{})
			if err != nil {
				t.Fatalf("ListClusters: %v", err)
			}
			if diff := cmp.Diff(before, got, opts); diff != "" {
				t.Errorf("a refused call changed clusters (-want +got):\n%s", diff)
			}
		})
	}
}

func testListAgentKeys(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	api := mustCreate(ctx, t, s, "prod", "api")
	db := mustCreate(ctx, t, s, "prod", "db")
	enroll := func(c store.Cluster, secret, key string) {
		t.Helper()
		mustCreateToken(ctx, t, s, c.ID, secret)
		if _, err := s.RedeemJoinToken(ctx, hashOf(secret), t0, []byte(key)); err != nil {
			t.Fatalf("RedeemJoinToken: %v", err)
		}
	}
	enroll(web, "web-1", "web-key-1")
	enroll(db, "db-1", "db-key")
	unknown := store.ClusterID("prod", "nope")
	// More IDs than a statement of SQLite takes parameters.
	many := []string{web.ID, api.ID}
	for i := range 40000 {
		many = append(many, store.ClusterID("absent", fmt.Sprintf("c%d", i)))
	}

	// Applied in order.
	steps := []struct {
		name   string
		change func(t *testing.T)
		ids    []string
		want   map[string][]byte
	}{
		{
			name: "enrolled, not enrolled, unknown",
			ids:  []string{web.ID, api.ID, unknown},
			want: map[string][]byte{web.ID: []byte("web-key-1"), api.ID: nil},
		},
		{name: "none", ids: nil, want: map[string][]byte{}},
		{name: "twice the same", ids: []string{db.ID, db.ID}, want: map[string][]byte{db.ID: []byte("db-key")}},
		{name: "many", ids: many, want: map[string][]byte{web.ID: []byte("web-key-1"), api.ID: nil}},
		{
			name:   "enrolled anew",
			change: func(*testing.T) { enroll(web, "web-2", "web-key-2") },
			ids:    []string{web.ID, db.ID},
			want:   map[string][]byte{web.ID: []byte("web-key-2"), db.ID: []byte("db-key")},
		},
		{
			name: "deleted",
			change: func(t *testing.T) {
				if err := s.DeleteCluster(t.Context(), db.ID); err != nil {
					t.Fatalf("DeleteCluster: %v", err)
				}
			},
			ids:  []string{web.ID, db.ID},
			want: map[string][]byte{web.ID: []byte("web-key-2")},
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if tt.change != nil {
				tt.change(t)
			}
			got, err := s.ListAgentKeys(t.Context(), tt.ids)
			if err != nil {
				t.Fatalf("ListAgentKeys: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if got == nil {
				t.Error("ListAgentKeys returned a nil map")
			}
		})
	}

	t.Run("no alias", func(t *testing.T) {
		got, err := s.ListAgentKeys(t.Context(), []string{web.ID})
		if err != nil {
			t.Fatalf("ListAgentKeys: %v", err)
		}
		got[web.ID][0] = 'X'
		again, err := s.ListAgentKeys(t.Context(), []string{web.ID})
		if err != nil {
			t.Fatalf("ListAgentKeys: %v", err)
		}
		if diff := cmp.Diff(map[string][]byte{web.ID: []byte("web-key-2")}, again, opts); diff != "" {
			t.Errorf("keys after changing a returned one (-want +got):\n%s", diff)
		}
	})
	t.Run("malformed ID", func(t *testing.T) {
		if _, err := s.ListAgentKeys(t.Context(), []string{web.ID, "prod/web"}); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("ListAgentKeys = %v, want %v", err, store.ErrInvalid)
		}
	})
}

func testTunnel(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	other := mustCreate(ctx, t, s, "prod", "api")

	// Times with nanoseconds: the store keeps microseconds, and ClearTunnel
	// must still match the value the caller passed to SetTunnel.
	a1 := store.Tunnel{Replica: "hub-a", ConnectedAt: at(time.Minute + 1)}
	b1 := store.Tunnel{Replica: "hub-b", ConnectedAt: at(2*time.Minute + 999)}
	b2 := store.Tunnel{Replica: "hub-b", ConnectedAt: at(3 * time.Minute)}
	storedTunnel := func(t store.Tunnel) store.Tunnel {
		return store.Tunnel{Replica: t.Replica, ConnectedAt: stored(t.ConnectedAt)}
	}
	set := func(t store.Tunnel) func() (bool, error) {
		return func() (bool, error) { return false, s.SetTunnel(ctx, web.ID, t) }
	}
	release := func(t store.Tunnel) func() (bool, error) {
		return func() (bool, error) { return s.ClearTunnel(ctx, web.ID, t) }
	}

	// Applied in order to the same cluster.
	steps := []struct {
		name        string
		do          func() (bool, error)
		wantCleared bool
		want        store.Tunnel
	}{
		{"replica a connects", set(a1), false, storedTunnel(a1)},
		{"replica b takes over", set(b1), false, storedTunnel(b1)},
		{"stale clear by a is refused", release(a1), false, storedTunnel(b1)},
		{"agent reconnects to b", set(b2), false, storedTunnel(b2)},
		{"clear of b's older connection is refused", release(b1), false, storedTunnel(b2)},
		{"b clears its current connection", release(b2), true, store.Tunnel{}},
		{"clearing again changes nothing", release(b2), false, store.Tunnel{}},
		{"a connects again", set(a1), false, storedTunnel(a1)},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			cleared, err := tt.do()
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if cleared != tt.wantCleared {
				t.Errorf("cleared = %v, want %v", cleared, tt.wantCleared)
			}
			want := created("prod", "web")
			want.Tunnel = tt.want
			if diff := cmp.Diff(want, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
				t.Errorf("cluster mismatch (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff(other, mustGet(ctx, t, s, other.ID), opts); diff != "" {
		t.Errorf("another cluster changed (-want +got):\n%s", diff)
	}
}

// testRecordConnection: RecordConnection is SetTunnel and RecordHeartbeat
// at once.
func testRecordConnection(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	other := mustCreate(ctx, t, s, "prod", "api")
	a1 := store.Tunnel{Replica: "hub-a", ConnectedAt: at(time.Minute + 1)}
	b1 := store.Tunnel{Replica: "hub-b", ConnectedAt: at(2*time.Minute + 999)}
	connected := func(tun store.Tunnel, version string) store.Cluster {
		c := created("prod", "web")
		c.Tunnel = store.Tunnel{Replica: tun.Replica, ConnectedAt: stored(tun.ConnectedAt)}
		c.Agent.Version, c.Agent.KubernetesVersion, c.Agent.LastSeenAt = version, "v1.31.2", stored(tun.ConnectedAt)
		return c
	}

	// Applied in order to the same cluster.
	steps := []struct {
		name    string
		tunnel  store.Tunnel
		version string
	}{
		{"replica a", a1, "v0.1.0"},
		{"replica b takes over", b1, "v0.2.0"},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			hb := store.Heartbeat{AgentVersion: tt.version, KubernetesVersion: "v1.31.2", At: tt.tunnel.ConnectedAt}
			if err := s.RecordConnection(t.Context(), web.ID, tt.tunnel, hb); err != nil {
				t.Fatalf("RecordConnection: %v", err)
			}
			if diff := cmp.Diff(connected(tt.tunnel, tt.version), mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
				t.Errorf("cluster (-want +got):\n%s", diff)
			}
		})
	}
	// The holder recorded is the one ClearTunnel compares with.
	if cleared, err := s.ClearTunnel(ctx, web.ID, a1); err != nil || cleared {
		t.Errorf("ClearTunnel of the superseded holder = %v, %v; want false, nil", cleared, err)
	}
	if cleared, err := s.ClearTunnel(ctx, web.ID, b1); err != nil || !cleared {
		t.Errorf("ClearTunnel of the holder = %v, %v; want true, nil", cleared, err)
	}
	want := connected(b1, "v0.2.0")
	want.Tunnel = store.Tunnel{}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, web.ID), opts); diff != "" {
		t.Errorf("cluster after ClearTunnel (-want +got):\n%s", diff)
	}

	validHB := store.Heartbeat{AgentVersion: "v9", At: at(time.Hour)}
	errs := []struct {
		name    string
		id      string
		tunnel  store.Tunnel
		hb      store.Heartbeat
		wantErr error
	}{
		{"unknown cluster", "/groups/prod/clusters/nope", a1, validHB, store.ErrNotFound},
		{"malformed ID", "prod/web", a1, validHB, store.ErrInvalid},
		{"empty replica", web.ID, store.Tunnel{ConnectedAt: t0}, validHB, store.ErrInvalid},
		{"heartbeat without a time", web.ID, a1, store.Heartbeat{AgentVersion: "v9"}, store.ErrInvalid},
		{"version too long", web.ID, a1, store.Heartbeat{AgentVersion: strings.Repeat("1", store.MaxVersionLen+1), At: t0}, store.ErrInvalid},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordConnection(t.Context(), tt.id, tt.tunnel, tt.hb); !errors.Is(err, tt.wantErr) {
				t.Errorf("RecordConnection = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, web.ID), opts); diff != "" {
		t.Errorf("failed calls changed the cluster (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, mustGet(ctx, t, s, other.ID), opts); diff != "" {
		t.Errorf("another cluster changed (-want +got):\n%s", diff)
	}
}

func testTunnelErrors(t *testing.T, s store.Store) {
	web := mustCreate(t.Context(), t, s, "prod", "web")
	valid := store.Tunnel{Replica: "hub-a", ConnectedAt: t0}
	tests := []struct {
		name    string
		id      string
		tunnel  store.Tunnel
		wantErr error
	}{
		{"unknown cluster", "/groups/prod/clusters/api", valid, store.ErrNotFound},
		{"malformed ID", "/groups/prod/web", valid, store.ErrInvalid},
		{"empty replica", web.ID, store.Tunnel{ConnectedAt: t0}, store.ErrInvalid},
		{"zero time", web.ID, store.Tunnel{Replica: "hub-a"}, store.ErrInvalid},
		{"replica too long", web.ID, store.Tunnel{Replica: strings.Repeat("h", store.MaxReplicaLen+1), ConnectedAt: t0}, store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetTunnel(t.Context(), tt.id, tt.tunnel); !errors.Is(err, tt.wantErr) {
				t.Errorf("SetTunnel = %v, want %v", err, tt.wantErr)
			}
			if _, err := s.ClearTunnel(t.Context(), tt.id, tt.tunnel); !errors.Is(err, tt.wantErr) {
				t.Errorf("ClearTunnel = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if diff := cmp.Diff(web, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
		t.Errorf("failed calls changed the cluster (-want +got):\n%s", diff)
	}
}

func testRecordAgentStatus(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web")
	other := mustCreate(ctx, t, s, "prod", "api")
	hb := store.Heartbeat{AgentVersion: "v0.1.0", KubernetesVersion: "v1.31.2", At: at(time.Minute)}
	if err := s.RecordHeartbeat(ctx, web.ID, hb); err != nil {
		t.Fatalf("RecordHeartbeat: %v", err)
	}
	// The report is kept apart from what the heartbeat recorded.
	withStatus := func(st store.AgentStatus) store.Cluster {
		c := created("prod", "web")
		c.Agent = store.Agent{Version: "v0.1.0", KubernetesVersion: "v1.31.2", LastSeenAt: stored(at(time.Minute)), Status: st}
		return c
	}
	longest := strings.Repeat("é", store.MaxLastErrorLen/2) // exactly the limit, in bytes

	// Applied in order to the same cluster.
	steps := []struct {
		name string
		st   store.AgentStatus
		want store.Cluster
	}{
		{
			name: "first report",
			st:   store.AgentStatus{AgentVersion: "v0.2.0", KubernetesVersion: "v1.32.0", NodeCount: 3, ReportedAt: at(2 * time.Minute)},
			want: withStatus(store.AgentStatus{AgentVersion: "v0.2.0", KubernetesVersion: "v1.32.0", NodeCount: 3, ReportedAt: stored(at(2 * time.Minute))}),
		},
		{
			name: "a problem, node count unknown",
			st:   store.AgentStatus{AgentVersion: "v0.2.0", NodeCount: -1, LastError: "list nodes: connection refused", ReportedAt: at(3 * time.Minute)},
			want: withStatus(store.AgentStatus{AgentVersion: "v0.2.0", NodeCount: -1, LastError: "list nodes: connection refused", ReportedAt: stored(at(3 * time.Minute))}),
		},
		{
			name: "longest last error",
			st:   store.AgentStatus{NodeCount: 1, LastError: longest, ReportedAt: at(4 * time.Minute)},
			want: withStatus(store.AgentStatus{NodeCount: 1, LastError: longest, ReportedAt: stored(at(4 * time.Minute))}),
		},
		{
			name: "older time, last call wins, the error clears",
			st:   store.AgentStatus{AgentVersion: "v0.2.1", KubernetesVersion: "v1.32.1", ReportedAt: at(90 * time.Second)},
			want: withStatus(store.AgentStatus{AgentVersion: "v0.2.1", KubernetesVersion: "v1.32.1", ReportedAt: stored(at(90 * time.Second))}),
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordAgentStatus(t.Context(), web.ID, tt.st); err != nil {
				t.Fatalf("RecordAgentStatus: %v", err)
			}
			if diff := cmp.Diff(tt.want, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
				t.Errorf("cluster after the report (-want +got):\n%s", diff)
			}
		})
	}

	// A heartbeat leaves the report alone.
	hb = store.Heartbeat{AgentVersion: "v0.3.0", At: at(5 * time.Minute)}
	if err := s.RecordHeartbeat(ctx, web.ID, hb); err != nil {
		t.Fatalf("RecordHeartbeat: %v", err)
	}
	want := created("prod", "web")
	want.Agent = store.Agent{Version: "v0.3.0", LastSeenAt: stored(at(5 * time.Minute)),
		Status: store.AgentStatus{AgentVersion: "v0.2.1", KubernetesVersion: "v1.32.1", ReportedAt: stored(at(90 * time.Second))}}
	if diff := cmp.Diff(want, mustGet(ctx, t, s, web.ID), opts); diff != "" {
		t.Errorf("cluster after a heartbeat (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(other, mustGet(ctx, t, s, other.ID), opts); diff != "" {
		t.Errorf("another cluster changed (-want +got):\n%s", diff)
	}

	// The report goes with its cluster.
	if err := s.DeleteCluster(ctx, web.ID); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	if diff := cmp.Diff(created("prod", "web"), mustCreate(ctx, t, s, "prod", "web"), opts); diff != "" {
		t.Errorf("cluster re-created under the same name (-want +got):\n%s", diff)
	}
}

func testRecordAgentStatusInvalid(t *testing.T, s store.Store) {
	web := mustCreate(t.Context(), t, s, "prod", "web")
	valid := store.AgentStatus{AgentVersion: "v1", NodeCount: 1, ReportedAt: t0}
	with := func(f func(st *store.AgentStatus)) store.AgentStatus {
		st := valid
		f(&st)
		return st
	}
	tests := []struct {
		name    string
		id      string
		st      store.AgentStatus
		wantErr error
	}{
		{"unknown cluster", "/groups/prod/clusters/api", valid, store.ErrNotFound},
		{"malformed ID", "prod/web", valid, store.ErrInvalid},
		{"zero time", web.ID, with(func(st *store.AgentStatus) { st.ReportedAt = time.Time{} }), store.ErrInvalid},
		{"node count below -1", web.ID, with(func(st *store.AgentStatus) { st.NodeCount = -2 }), store.ErrInvalid},
		{"agent version too long", web.ID, with(func(st *store.AgentStatus) { st.AgentVersion = strings.Repeat("1", store.MaxVersionLen+1) }), store.ErrInvalid},
		{"kubernetes version with a control character", web.ID, with(func(st *store.AgentStatus) { st.KubernetesVersion = "v1.31\x00" }), store.ErrInvalid},
		{"last error too long", web.ID, with(func(st *store.AgentStatus) { st.LastError = strings.Repeat("x", store.MaxLastErrorLen+1) }), store.ErrInvalid},
		{"last error on two lines", web.ID, with(func(st *store.AgentStatus) { st.LastError = "one\ntwo" }), store.ErrInvalid},
		{"last error not UTF-8", web.ID, with(func(st *store.AgentStatus) { st.LastError = "bad\xff" }), store.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.RecordAgentStatus(t.Context(), tt.id, tt.st); !errors.Is(err, tt.wantErr) {
				t.Errorf("RecordAgentStatus = %v, want %v", err, tt.wantErr)
			}
		})
	}
	if diff := cmp.Diff(web, mustGet(t.Context(), t, s, web.ID), opts); diff != "" {
		t.Errorf("failed calls changed the cluster (-want +got):\n%s", diff)
	}
}
