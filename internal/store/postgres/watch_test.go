package postgres_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
)

// waitTimeout bounds each wait for a notification, or for a watch to
// reconnect after the server restarted.
const waitTimeout = 30 * time.Second

// t0 is the tests' clock.
var t0 = time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

// watch runs s.WatchClusters until the test ends, and returns the IDs it
// reports, in order. The watch must end with the test, returning nil.
func watch(t *testing.T, s *postgres.Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// Unbuffered: the callback waits for the test to take each ID, or for
	// the watch to end.
	ids := make(chan string)
	var wg sync.WaitGroup
	wg.Go(func() {
		err := s.WatchClusters(ctx, func(id string) {
			select {
			case ids <- id:
			case <-ctx.Done():
			}
		})
		if err != nil {
			t.Errorf("WatchClusters = %v, want nil when its context ends", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return ids
}

// next returns the next ID that the watch reports.
func next(t *testing.T, ids <-chan string) string {
	t.Helper()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case id := <-ids:
		return id
	case <-timer.C:
		t.Fatalf("no notification within %s", waitTimeout)
		return ""
	}
}

// mustCreateCluster creates the cluster prod/name and returns its ID.
func mustCreateCluster(t *testing.T, s store.Store, name string) string {
	t.Helper()
	c, err := s.CreateCluster(t.Context(), store.Cluster{Group: "prod", Name: name, CreatedAt: t0})
	if err != nil {
		t.Fatalf("CreateCluster(%s): %v", name, err)
	}
	return c.ID
}

// TestWatchAcrossReplicas checks that a watch on one Store sees the
// changes made through another, the way hub replicas share a database:
// exactly the changes that qualify, in order.
func TestWatchAcrossReplicas(t *testing.T) {
	ctx := t.Context()
	dsn := server.NewDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ids := watch(t, a)
	if got := next(t, ids); got != "" {
		t.Fatalf("first notification = %q, want %q", got, "")
	}

	web := mustCreateCluster(t, b, "web")
	api := mustCreateCluster(t, b, "api")
	db := mustCreateCluster(t, b, "db")
	// After each step, a change to the sentinel shows that every
	// notification of the step has come: they arrive in commit order.
	sentinel := mustCreateCluster(t, b, "sentinel")
	hubA := store.Tunnel{Replica: "hub-a", ConnectedAt: t0}
	hubB := store.Tunnel{Replica: "hub-b", ConnectedAt: t0.Add(time.Second)}
	tokenHash := store.TokenHash(sha256.Sum256([]byte("web-token")))

	// Applied in order, through b.
	steps := []struct {
		name string
		do   func() error
		want []string // the IDs a sees, before the sentinel's
		// anyOrder compares want as a set: one statement that changes
		// several clusters notifies in the order it meets their rows.
		anyOrder bool
	}{
		{"creation is not a change", func() error { return nil }, nil, false},
		{"set tunnel", func() error { return b.SetTunnel(ctx, web, hubA) }, []string{web}, false},
		{"set the same tunnel again", func() error { return b.SetTunnel(ctx, web, hubA) }, []string{web}, false},
		{"heartbeat is not a change", func() error {
			return b.RecordHeartbeat(ctx, web, store.Heartbeat{AgentVersion: "v1", At: t0})
		}, nil, false},
		{"agent status is not a change", func() error {
			return b.RecordAgentStatus(ctx, web, store.AgentStatus{NodeCount: 1, ReportedAt: t0})
		}, nil, false},
		{"stale clear is not a change", func() error {
			cleared, err := b.ClearTunnel(ctx, web, hubB)
			if cleared {
				return errors.New("cleared another replica's tunnel")
			}
			return err
		}, nil, false},
		{"clear", func() error {
			cleared, err := b.ClearTunnel(ctx, web, hubA)
			if err == nil && !cleared {
				return errors.New("did not clear")
			}
			return err
		}, []string{web}, false},
		{"token creation is not a change", func() error {
			return b.CreateJoinToken(ctx, store.JoinToken{Hash: tokenHash, ClusterID: web, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
		}, nil, false},
		{"enrollment", func() error {
			_, err := b.RedeemJoinToken(ctx, tokenHash, t0.Add(time.Minute), []byte("key"))
			return err
		}, []string{web}, false},
		{"failed enrollment is not a change", func() error {
			_, err := b.RedeemJoinToken(ctx, tokenHash, t0.Add(time.Minute), []byte("other"))
			if !errors.Is(err, store.ErrTokenUsed) {
				return fmt.Errorf("RedeemJoinToken of a used token = %v, want %v", err, store.ErrTokenUsed)
			}
			return nil
		}, nil, false},
		{"tunnels of two replicas, in commit order", func() error {
			return errors.Join(b.SetTunnel(ctx, web, hubA), b.SetTunnel(ctx, db, hubB), b.SetTunnel(ctx, api, hubA))
		}, []string{web, db, api}, false},
		{"replica removed, its tunnels cleared", func() error {
			_, err := b.RemoveReplica(ctx, "hub-a")
			return err
		}, []string{api, web}, true},
		{"replica expired, its tunnels cleared", func() error {
			if _, err := b.RenewReplica(ctx, store.Replica{Name: "hub-b", URL: "https://hub-b", ExpiresAt: t0.Add(time.Minute)}, t0); err != nil {
				return err
			}
			_, err := b.ExpireReplicas(ctx, t0.Add(time.Minute))
			return err
		}, []string{db}, false},
		{"cluster deleted", func() error { return b.DeleteCluster(ctx, api) }, []string{api}, false},
	}
	for i, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); err != nil {
				t.Fatalf("change: %v", err)
			}
			// A new connection time each step: a new sentinel change.
			if err := b.SetTunnel(ctx, sentinel, store.Tunnel{Replica: "hub-s", ConnectedAt: t0.Add(time.Duration(i) * time.Second)}); err != nil {
				t.Fatalf("SetTunnel(sentinel): %v", err)
			}
			var got []string
			for id := next(t, ids); id != sentinel; id = next(t, ids) {
				got = append(got, id)
			}
			var opts cmp.Options
			if tt.anyOrder {
				opts = append(opts, cmpopts.SortSlices(func(a, b string) bool { return a < b }))
			}
			if diff := cmp.Diff(tt.want, got, opts); diff != "" {
				t.Errorf("notifications (-want +got):\n%s", diff)
			}
		})
	}
}
