package sqlite

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

// watchTimeout bounds every wait for a watch.
const watchTimeout = 10 * time.Second

// receive returns the next value of ch, failing the test after
// watchTimeout.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("no %s within %v", what, watchTimeout)
		panic("unreachable")
	}
}

// TestWatchOverflow holds a watch's callback while changes are made: up to
// maxWatchQueue IDs queue for it and are delivered in order; one more
// drops them all for a single "". Either way the watch then goes on.
func TestWatchOverflow(t *testing.T) {
	web, api := store.ClusterID("prod", "web"), store.ClusterID("prod", "api")
	tests := []struct {
		name   string
		queued int
		want   []string
	}{
		{"full queue", maxWatchQueue, slices.Repeat([]string{web}, maxWatchQueue)},
		{"overflow", maxWatchQueue + 1, []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			s, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			for _, name := range []string{"web", "api"} {
				if _, err := s.CreateCluster(ctx, store.Cluster{Group: "prod", Name: name, CreatedAt: time.Unix(0, 0)}); err != nil {
					t.Fatalf("CreateCluster: %v", err)
				}
			}
			setTunnel := func(id string, n int) {
				t.Helper()
				tun := store.Tunnel{Replica: "hub-0", ConnectedAt: time.Unix(1, 0).Add(time.Duration(n) * time.Microsecond)}
				if err := s.SetTunnel(ctx, id, tun); err != nil {
					t.Fatalf("SetTunnel: %v", err)
				}
			}

			ids := make(chan string)       // the callback's arguments
			release := make(chan struct{}) // closed to let the held callback return
			done := make(chan error, 1)    // WatchClusters' result
			wctx, cancel := context.WithCancel(ctx)
			go func() {
				held := false // the first ID holds the callback until release
				done <- s.WatchClusters(wctx, func(id string) {
					select {
					case ids <- id:
					case <-wctx.Done():
						return
					}
					if id != "" && !held {
						held = true
						select {
						case <-release:
						case <-wctx.Done():
						}
					}
				})
			}()
			defer func() {
				cancel()
				if err := receive(t, done, "return of WatchClusters"); err != nil {
					t.Errorf("WatchClusters = %v, want nil", err)
				}
			}()

			if id := receive(t, ids, "first call"); id != "" {
				t.Fatalf("first call = %q, want \"\"", id)
			}
			setTunnel(web, 0)
			if id := receive(t, ids, "call for the first change"); id != web {
				t.Fatalf("call for the first change = %q, want %q", id, web)
			}
			// The callback is held: these queue, and the writers go on.
			for n := range tt.queued {
				setTunnel(web, n+1)
			}
			close(release)
			var got []string
			for range tt.want {
				got = append(got, receive(t, ids, "call"))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("calls after the hold (-want +got):\n%s", diff)
			}
			// The queue is empty again: the next change is delivered.
			setTunnel(api, 0)
			if id := receive(t, ids, "call for the next change"); id != api {
				t.Errorf("call for the next change = %q, want %q", id, api)
			}
		})
	}
}

// TestCloseEndsWatches checks that Close ends a running watch and that a
// watch of a closed store ends at once, both with an error.
func TestCloseEndsWatches(t *testing.T) {
	ctx := t.Context()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ids := make(chan string, 1) // the one call before Close
	done := make(chan error, 1) // WatchClusters' result
	go func() {
		done <- s.WatchClusters(ctx, func(id string) { ids <- id })
	}()
	if id := receive(t, ids, "first call"); id != "" {
		t.Fatalf("first call = %q, want \"\"", id)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := receive(t, done, "return of WatchClusters after Close"); !errors.Is(err, errClosed) {
		t.Errorf("WatchClusters after Close = %v, want %v", err, errClosed)
	}

	called := false
	err = s.WatchClusters(ctx, func(string) { called = true })
	if !errors.Is(err, errClosed) || called {
		t.Errorf("WatchClusters of a closed store = %v (callback called: %v), want %v without a call", err, called, errClosed)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
