package storetest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

// replica is a valid replica record whose lease ends at t0+expires.
func replica(name string, expires time.Duration) store.Replica {
	return store.Replica{Name: name, URL: "https://" + name + ".hub:8443", ExpiresAt: at(expires)}
}

// storedReplica is r as the store returns it.
func storedReplica(r store.Replica) store.Replica {
	r.ExpiresAt = stored(r.ExpiresAt)
	return r
}

// tunnelOf is a valid tunnel held by replica since t0+connected.
func tunnelOf(replica string, connected time.Duration) store.Tunnel {
	return store.Tunnel{Replica: replica, ConnectedAt: at(connected)}
}

// storedTunnel is t as the store returns it.
func storedTunnel(t store.Tunnel) store.Tunnel {
	return store.Tunnel{Replica: t.Replica, ConnectedAt: stored(t.ConnectedAt)}
}

// mustRenew renews r at now.
func mustRenew(ctx context.Context, t *testing.T, s store.Store, r store.Replica, now time.Time) {
	t.Helper()
	if _, err := s.RenewReplica(ctx, r, now); err != nil {
		t.Fatalf("RenewReplica(%s): %v", r.Name, err)
	}
}

// mustSetTunnel records tun as the holder of cluster id's tunnel.
func mustSetTunnel(ctx context.Context, t *testing.T, s store.Store, id string, tun store.Tunnel) {
	t.Helper()
	if err := s.SetTunnel(ctx, id, tun); err != nil {
		t.Fatalf("SetTunnel(%s, %s): %v", id, tun.Replica, err)
	}
}

// mustListTunnels returns the held tunnels.
func mustListTunnels(ctx context.Context, t *testing.T, s store.Store) map[string]store.Tunnel {
	t.Helper()
	got, err := s.ListTunnels(ctx)
	if err != nil {
		t.Fatalf("ListTunnels: %v", err)
	}
	return got
}

func testRenewReplica(t *testing.T, s store.Store) {
	// Applied in order. The boundaries are whole microseconds apart in
	// t0's nanoseconds, so they hold as the store truncates.
	steps := []struct {
		name        string
		r           store.Replica
		now         time.Time
		wantRenewed bool
	}{
		{"new replica", replica("hub-a", time.Minute), t0, false},
		{"renewed just before expiry, with another URL", store.Replica{Name: "hub-a", URL: "https://10.0.0.7:9443", ExpiresAt: at(2 * time.Minute)}, at(time.Minute - time.Microsecond), true},
		{"renewed with a shorter lease", replica("hub-a", 90*time.Second), at(time.Minute), true},
		{"renewed when the lease ends", replica("hub-a", 3*time.Minute), at(90 * time.Second), false},
		{"renewed long after expiry", replica("hub-a", time.Hour), at(30 * time.Minute), false},
		{"renewed again", replica("hub-a", 2*time.Hour), at(time.Hour - time.Microsecond), true},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			renewed, err := s.RenewReplica(t.Context(), tt.r, tt.now)
			if err != nil {
				t.Fatalf("RenewReplica: %v", err)
			}
			if renewed != tt.wantRenewed {
				t.Errorf("RenewReplica = %v, want %v", renewed, tt.wantRenewed)
			}
			got, err := s.ListReplicas(t.Context(), tt.now)
			if err != nil {
				t.Fatalf("ListReplicas: %v", err)
			}
			if diff := cmp.Diff([]store.Replica{storedReplica(tt.r)}, got, opts); diff != "" {
				t.Errorf("ListReplicas after renewal (-want +got):\n%s", diff)
			}
		})
	}
}

func testRenewReplicaInvalid(t *testing.T, s store.Store) {
	with := func(f func(r *store.Replica)) store.Replica {
		r := replica("hub-a", time.Minute)
		f(&r)
		return r
	}
	tests := []struct {
		name string
		r    store.Replica
		now  time.Time
	}{
		{"empty name", with(func(r *store.Replica) { r.Name = "" }), t0},
		{"name too long", with(func(r *store.Replica) { r.Name = strings.Repeat("h", store.MaxReplicaLen+1) }), t0},
		{"name with a control character", with(func(r *store.Replica) { r.Name = "hub\n0" }), t0},
		{"name not UTF-8", with(func(r *store.Replica) { r.Name = "hub\xff" }), t0},
		{"empty URL", with(func(r *store.Replica) { r.URL = "" }), t0},
		{"http URL", with(func(r *store.Replica) { r.URL = "http://hub-a:8443" }), t0},
		{"URL without host", with(func(r *store.Replica) { r.URL = "https://" }), t0},
		{"URL too long", with(func(r *store.Replica) { r.URL = "https://" + strings.Repeat("h", store.MaxReplicaURLLen) }), t0},
		{"URL with a control character", with(func(r *store.Replica) { r.URL = "https://hub-a\x00" }), t0},
		{"zero expiry", with(func(r *store.Replica) { r.ExpiresAt = time.Time{} }), t0},
		{"zero now", replica("hub-a", time.Minute), time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.RenewReplica(t.Context(), tt.r, tt.now); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("RenewReplica(%+v, %v) = %v, want %v", tt.r, tt.now, err, store.ErrInvalid)
			}
		})
	}
	if _, err := s.ListReplicas(t.Context(), time.Time{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ListReplicas(zero time) = %v, want %v", err, store.ErrInvalid)
	}
	if _, err := s.ExpireReplicas(t.Context(), time.Time{}); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("ExpireReplicas(zero time) = %v, want %v", err, store.ErrInvalid)
	}
	for _, name := range []string{"", strings.Repeat("h", store.MaxReplicaLen+1), "hub\x00"} {
		if _, err := s.RemoveReplica(t.Context(), name); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("RemoveReplica(%q) = %v, want %v", name, err, store.ErrInvalid)
		}
	}
	// The longest name and URL are accepted; the failed calls stored nothing.
	longest := store.Replica{
		Name:      strings.Repeat("h", store.MaxReplicaLen),
		URL:       "https://" + strings.Repeat("h", store.MaxReplicaURLLen-len("https://")),
		ExpiresAt: at(time.Minute),
	}
	mustRenew(t.Context(), t, s, longest, t0)
	got, err := s.ListReplicas(t.Context(), t0)
	if err != nil {
		t.Fatalf("ListReplicas: %v", err)
	}
	if diff := cmp.Diff([]store.Replica{storedReplica(longest)}, got, opts); diff != "" {
		t.Errorf("ListReplicas after invalid renewals (-want +got):\n%s", diff)
	}
}

func testListReplicas(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Renewed out of order; byte-wise, "hub-1" < "hub-10" < "hub-9".
	r9, r1, r10 := replica("hub-9", 3*time.Minute), replica("hub-1", time.Minute), replica("hub-10", 2*time.Minute)
	for _, r := range []store.Replica{r9, r1, r10} {
		mustRenew(ctx, t, s, r, t0)
	}
	tests := []struct {
		name string
		now  time.Time
		want []store.Replica
	}{
		{"all", t0, []store.Replica{storedReplica(r1), storedReplica(r10), storedReplica(r9)}},
		{"just before the first expiry", at(time.Minute - time.Microsecond), []store.Replica{storedReplica(r1), storedReplica(r10), storedReplica(r9)}},
		{"at the first expiry", at(time.Minute), []store.Replica{storedReplica(r10), storedReplica(r9)}},
		{"at the second expiry", at(2 * time.Minute), []store.Replica{storedReplica(r9)}},
		{"after every expiry", at(time.Hour), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListReplicas(t.Context(), tt.now)
			if err != nil {
				t.Fatalf("ListReplicas: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("ListReplicas(%v) mismatch (-want +got):\n%s", tt.now, diff)
			}
		})
	}
}

func testRemoveReplica(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web").ID
	api := mustCreate(ctx, t, s, "prod", "api").ID
	db := mustCreate(ctx, t, s, "prod", "db").ID
	idle := mustCreate(ctx, t, s, "prod", "idle").ID
	edge := mustCreate(ctx, t, s, "edge", "1").ID
	mustRenew(ctx, t, s, replica("hub-a", time.Hour), t0)
	mustRenew(ctx, t, s, replica("hub-b", time.Hour), t0)
	// hub-c holds a tunnel but has no record (yet).
	for id, tun := range map[string]store.Tunnel{
		web:  tunnelOf("hub-a", time.Minute),
		api:  tunnelOf("hub-a", 2*time.Minute),
		db:   tunnelOf("hub-b", 3*time.Minute),
		edge: tunnelOf("hub-c", 4*time.Minute),
	} {
		mustSetTunnel(ctx, t, s, id, tun)
	}

	// Applied in order.
	steps := []struct {
		name         string
		replica      string
		wantCleared  []string
		wantReplicas []store.Replica
		wantTunnels  map[string]store.Tunnel
	}{
		{
			name:         "hub-a, with two tunnels",
			replica:      "hub-a",
			wantCleared:  []string{api, web},
			wantReplicas: []store.Replica{storedReplica(replica("hub-b", time.Hour))},
			wantTunnels: map[string]store.Tunnel{
				db:   storedTunnel(tunnelOf("hub-b", 3*time.Minute)),
				edge: storedTunnel(tunnelOf("hub-c", 4*time.Minute)),
			},
		},
		{
			name:         "hub-a again",
			replica:      "hub-a",
			wantCleared:  nil,
			wantReplicas: []store.Replica{storedReplica(replica("hub-b", time.Hour))},
			wantTunnels: map[string]store.Tunnel{
				db:   storedTunnel(tunnelOf("hub-b", 3*time.Minute)),
				edge: storedTunnel(tunnelOf("hub-c", 4*time.Minute)),
			},
		},
		{
			name:         "hub-c, without a record, still clears its tunnel",
			replica:      "hub-c",
			wantCleared:  []string{edge},
			wantReplicas: []store.Replica{storedReplica(replica("hub-b", time.Hour))},
			wantTunnels:  map[string]store.Tunnel{db: storedTunnel(tunnelOf("hub-b", 3*time.Minute))},
		},
		{
			name:         "never seen",
			replica:      "hub-z",
			wantCleared:  nil,
			wantReplicas: []store.Replica{storedReplica(replica("hub-b", time.Hour))},
			wantTunnels:  map[string]store.Tunnel{db: storedTunnel(tunnelOf("hub-b", 3*time.Minute))},
		},
		{
			name:         "hub-b",
			replica:      "hub-b",
			wantCleared:  []string{db},
			wantReplicas: nil,
			wantTunnels:  nil,
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			cleared, err := s.RemoveReplica(t.Context(), tt.replica)
			if err != nil {
				t.Fatalf("RemoveReplica: %v", err)
			}
			if diff := cmp.Diff(tt.wantCleared, cleared, opts); diff != "" {
				t.Errorf("RemoveReplica cleared (-want +got):\n%s", diff)
			}
			replicas, err := s.ListReplicas(t.Context(), t0)
			if err != nil {
				t.Fatalf("ListReplicas: %v", err)
			}
			if diff := cmp.Diff(tt.wantReplicas, replicas, opts); diff != "" {
				t.Errorf("replicas left (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTunnels, mustListTunnels(t.Context(), t, s), opts); diff != "" {
				t.Errorf("tunnels left (-want +got):\n%s", diff)
			}
		})
	}
	// Only the tunnels changed: a cleared cluster reads as one never
	// connected, and the idle one is as created.
	want := map[string]store.Cluster{web: created("prod", "web"), idle: created("prod", "idle")}
	got := map[string]store.Cluster{web: mustGet(ctx, t, s, web), idle: mustGet(ctx, t, s, idle)}
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("clusters after RemoveReplica (-want +got):\n%s", diff)
	}
}

func testExpireReplicas(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web").ID
	api := mustCreate(ctx, t, s, "prod", "api").ID
	db := mustCreate(ctx, t, s, "prod", "db").ID
	edge := mustCreate(ctx, t, s, "edge", "1").ID
	for _, r := range []store.Replica{replica("hub-c", 3*time.Minute), replica("hub-a", time.Minute), replica("hub-b", 2*time.Minute)} {
		mustRenew(ctx, t, s, r, t0)
	}
	for id, tun := range map[string]store.Tunnel{
		web: tunnelOf("hub-a", time.Second),
		api: tunnelOf("hub-b", 2*time.Second),
		db:  tunnelOf("hub-c", 3*time.Second),
		// hub-x has no record: no expiry clears its tunnel.
		edge: tunnelOf("hub-x", 4*time.Second),
	} {
		mustSetTunnel(ctx, t, s, id, tun)
	}

	// Applied in order.
	steps := []struct {
		name         string
		now          time.Time
		wantRemoved  []string
		wantReplicas []store.Replica
		wantTunnels  map[string]store.Tunnel
	}{
		{
			name:         "before any expiry",
			now:          at(time.Minute - time.Microsecond),
			wantRemoved:  nil,
			wantReplicas: []store.Replica{storedReplica(replica("hub-a", time.Minute)), storedReplica(replica("hub-b", 2*time.Minute)), storedReplica(replica("hub-c", 3*time.Minute))},
			wantTunnels: map[string]store.Tunnel{
				web:  storedTunnel(tunnelOf("hub-a", time.Second)),
				api:  storedTunnel(tunnelOf("hub-b", 2*time.Second)),
				db:   storedTunnel(tunnelOf("hub-c", 3*time.Second)),
				edge: storedTunnel(tunnelOf("hub-x", 4*time.Second)),
			},
		},
		{
			name:         "two expired, one exactly now",
			now:          at(2 * time.Minute),
			wantRemoved:  []string{"hub-a", "hub-b"},
			wantReplicas: []store.Replica{storedReplica(replica("hub-c", 3*time.Minute))},
			wantTunnels: map[string]store.Tunnel{
				db:   storedTunnel(tunnelOf("hub-c", 3*time.Second)),
				edge: storedTunnel(tunnelOf("hub-x", 4*time.Second)),
			},
		},
		{
			name:         "nothing more expired",
			now:          at(2 * time.Minute),
			wantRemoved:  nil,
			wantReplicas: []store.Replica{storedReplica(replica("hub-c", 3*time.Minute))},
			wantTunnels: map[string]store.Tunnel{
				db:   storedTunnel(tunnelOf("hub-c", 3*time.Second)),
				edge: storedTunnel(tunnelOf("hub-x", 4*time.Second)),
			},
		},
		{
			name:         "the last",
			now:          at(time.Hour),
			wantRemoved:  []string{"hub-c"},
			wantReplicas: nil,
			wantTunnels:  map[string]store.Tunnel{edge: storedTunnel(tunnelOf("hub-x", 4*time.Second))},
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			removed, err := s.ExpireReplicas(t.Context(), tt.now)
			if err != nil {
				t.Fatalf("ExpireReplicas: %v", err)
			}
			if diff := cmp.Diff(tt.wantRemoved, removed, opts); diff != "" {
				t.Errorf("ExpireReplicas removed (-want +got):\n%s", diff)
			}
			// Listed at t0, an expired replica that was not removed would
			// show.
			replicas, err := s.ListReplicas(t.Context(), t0)
			if err != nil {
				t.Fatalf("ListReplicas: %v", err)
			}
			if diff := cmp.Diff(tt.wantReplicas, replicas, opts); diff != "" {
				t.Errorf("replicas left (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantTunnels, mustListTunnels(t.Context(), t, s), opts); diff != "" {
				t.Errorf("tunnels left (-want +got):\n%s", diff)
			}
		})
	}

	// An expired replica that comes back learns it was expired.
	renewed, err := s.RenewReplica(ctx, replica("hub-a", 2*time.Hour), at(time.Hour))
	if err != nil {
		t.Fatalf("RenewReplica: %v", err)
	}
	if renewed {
		t.Error("RenewReplica of an expired, removed replica = true, want false")
	}
}

func testListTunnels(t *testing.T, s store.Store) {
	ctx := t.Context()
	if diff := cmp.Diff(map[string]store.Tunnel(nil), mustListTunnels(ctx, t, s), opts); diff != "" {
		t.Errorf("ListTunnels of an empty store (-want +got):\n%s", diff)
	}
	web := mustCreate(ctx, t, s, "prod", "web").ID
	api := mustCreate(ctx, t, s, "prod", "api").ID
	db := mustCreate(ctx, t, s, "prod", "db").ID
	mustCreate(ctx, t, s, "prod", "idle")
	webTunnel, apiTunnel, dbTunnel := tunnelOf("hub-a", time.Minute+1), tunnelOf("hub-b", 2*time.Minute), tunnelOf("hub-a", 3*time.Minute)

	// Applied in order.
	steps := []struct {
		name string
		do   func(ctx context.Context) error
		want map[string]store.Tunnel
	}{
		{
			name: "none held",
			do:   func(context.Context) error { return nil },
			want: nil,
		},
		{
			name: "three held",
			do: func(ctx context.Context) error {
				return errors.Join(s.SetTunnel(ctx, web, webTunnel), s.SetTunnel(ctx, api, apiTunnel), s.SetTunnel(ctx, db, dbTunnel))
			},
			want: map[string]store.Tunnel{web: storedTunnel(webTunnel), api: storedTunnel(apiTunnel), db: storedTunnel(dbTunnel)},
		},
		{
			name: "one cleared",
			do: func(ctx context.Context) error {
				_, err := s.ClearTunnel(ctx, api, apiTunnel)
				return err
			},
			want: map[string]store.Tunnel{web: storedTunnel(webTunnel), db: storedTunnel(dbTunnel)},
		},
		{
			name: "one taken over",
			do:   func(ctx context.Context) error { return s.SetTunnel(ctx, db, tunnelOf("hub-b", 4*time.Minute)) },
			want: map[string]store.Tunnel{web: storedTunnel(webTunnel), db: storedTunnel(tunnelOf("hub-b", 4*time.Minute))},
		},
		{
			name: "one's cluster deleted",
			do:   func(ctx context.Context) error { return s.DeleteCluster(ctx, web) },
			want: map[string]store.Tunnel{db: storedTunnel(tunnelOf("hub-b", 4*time.Minute))},
		},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(t.Context()); err != nil {
				t.Fatalf("change: %v", err)
			}
			if diff := cmp.Diff(tt.want, mustListTunnels(t.Context(), t, s), opts); diff != "" {
				t.Errorf("ListTunnels mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
