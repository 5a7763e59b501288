package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
)

// watchTimeout bounds the wait for a watch to see a change: generous, since
// a backend may deliver changes from another connection, late.
const watchTimeout = 10 * time.Second

// A watch is a running WatchClusters call whose callback hands each ID to
// the test.
type watch struct {
	// ids carries the callback's arguments; unbuffered, so the callback
	// waits for the test (or the end of the watch).
	ids    chan string
	cancel context.CancelFunc
	// done is closed when WatchClusters has returned err.
	done chan struct{}
	err  error
}

// startWatch starts watching s, waits for the first call, which must be
// "", and stops the watch when the test ends (see stop).
func startWatch(t *testing.T, s store.Store) *watch {
	t.Helper()
	w, ok := s.(store.Watcher)
	if !ok {
		t.Fatalf("%T does not implement store.Watcher", s)
	}
	ctx, cancel := context.WithCancel(t.Context())
	wt := &watch{ids: make(chan string), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(wt.done)
		wt.err = w.WatchClusters(ctx, func(id string) {
			select {
			case wt.ids <- id:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { wt.stop(t) })

	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	select {
	case id := <-wt.ids:
		if id != "" {
			t.Fatalf("first call of the watch = %q, want \"\"", id)
		}
	case <-wt.done:
		t.Fatalf("WatchClusters returned %v before calling back", wt.err)
	case <-timer.C:
		t.Fatalf("no first call of the watch within %v", watchTimeout)
	}
	return wt
}

// stop ends the watch's context and checks that WatchClusters returns nil.
// It may be called again.
func (wt *watch) stop(t *testing.T) {
	t.Helper()
	wt.cancel()
	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	select {
	case <-wt.done:
	case <-timer.C:
		t.Fatalf("WatchClusters did not return within %v of its context's end", watchTimeout)
	}
	if wt.err != nil {
		t.Errorf("WatchClusters = %v, want nil", wt.err)
	}
}

// next returns the next n cluster IDs the watch sees, sorted. It skips "":
// a backend may ask for a re-read at any time.
func (wt *watch) next(t *testing.T, n int) []string {
	t.Helper()
	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	var ids []string
	for len(ids) < n {
		select {
		case id := <-wt.ids:
			if id != "" {
				ids = append(ids, id)
			}
		case <-wt.done:
			t.Fatalf("WatchClusters returned %v after %q, want %d IDs", wt.err, ids, n)
		case <-timer.C:
			t.Fatalf("the watch saw %q within %v, want %d IDs", ids, watchTimeout, n)
		}
	}
	slices.Sort(ids)
	return ids
}

// testWatchClusters makes each kind of change in turn and checks the IDs
// the watch sees. A change that must yield nothing is followed by one to
// another cluster that yields its ID: had the first yielded one, it would
// be seen instead.
func testWatchClusters(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web").ID
	api := mustCreate(ctx, t, s, "prod", "api").ID
	db := mustCreate(ctx, t, s, "prod", "db").ID
	token := mustCreateToken(ctx, t, s, web, "web-token")
	wt := startWatch(t, s)

	wantErr := func(err, want error) error {
		if !errors.Is(err, want) {
			return fmt.Errorf("got %v, want %v", err, want)
		}
		return nil
	}
	release := func(id string, tun store.Tunnel, want bool) func(context.Context) error {
		return func(ctx context.Context) error {
			cleared, err := s.ClearTunnel(ctx, id, tun)
			if err == nil && cleared != want {
				err = fmt.Errorf("ClearTunnel cleared = %v, want %v", cleared, want)
			}
			return err
		}
	}
	set := func(id string, tun store.Tunnel) func(context.Context) error {
		return func(ctx context.Context) error { return s.SetTunnel(ctx, id, tun) }
	}

	// Applied in order. The IDs of one step are compared sorted: one change
	// may touch several clusters in any order.
	steps := []struct {
		name string
		do   func(ctx context.Context) error
		want []string
	}{
		{"tunnel set", set(web, tunnelOf("hub-a", time.Minute)), []string{web}},
		{"tunnel taken over", set(web, tunnelOf("hub-b", 2*time.Minute)), []string{web}},
		{"connection recorded", func(ctx context.Context) error {
			return s.RecordConnection(ctx, web, tunnelOf("hub-b", 2*time.Minute), store.Heartbeat{AgentVersion: "v1", At: at(2 * time.Minute)})
		}, []string{web}},
		{"heartbeat", func(ctx context.Context) error {
			return s.RecordHeartbeat(ctx, web, store.Heartbeat{AgentVersion: "v1", At: at(time.Minute)})
		}, nil},
		{"heartbeats", func(ctx context.Context) error {
			hb := store.Heartbeat{AgentVersion: "v1", At: at(time.Minute)}
			return s.RecordHeartbeats(ctx, map[string]store.Heartbeat{web: hb, api: hb, db: hb})
		}, nil},
		{"agent status", func(ctx context.Context) error {
			return s.RecordAgentStatus(ctx, web, store.AgentStatus{NodeCount: 3, ReportedAt: at(time.Minute)})
		}, nil},
		{"clear of a superseded tunnel", release(web, tunnelOf("hub-a", time.Minute), false), nil},
		{"another cluster's tunnel set", set(api, tunnelOf("hub-a", 3*time.Minute)), []string{api}},
		{"tunnel cleared", release(web, tunnelOf("hub-b", 2*time.Minute), true), []string{web}},
		{"agent enrolled", func(ctx context.Context) error {
			_, err := s.RedeemJoinToken(ctx, token, at(time.Minute), []byte("key"))
			return err
		}, []string{web}},
		{"failed enrollment", func(ctx context.Context) error {
			_, err := s.RedeemJoinToken(ctx, token, at(time.Minute), []byte("other-key"))
			return wantErr(err, store.ErrTokenUsed)
		}, nil},
		{"replica renewed", func(ctx context.Context) error {
			_, err := s.RenewReplica(ctx, replica("hub-a", time.Hour), t0)
			return err
		}, nil},
		{"third cluster's tunnel set", set(db, tunnelOf("hub-a", 4*time.Minute)), []string{db}},
		{"replica removed", func(ctx context.Context) error {
			_, err := s.RemoveReplica(ctx, "hub-a")
			return err
		}, []string{api, db}},
		{"tunnel set by a short-lived replica", func(ctx context.Context) error {
			_, err := s.RenewReplica(ctx, replica("hub-c", time.Minute), t0)
			return errors.Join(err, s.SetTunnel(ctx, web, tunnelOf("hub-c", 5*time.Minute)))
		}, []string{web}},
		{"replica expired", func(ctx context.Context) error {
			_, err := s.ExpireReplicas(ctx, at(time.Minute))
			return err
		}, []string{web}},
		{"cluster deleted", func(ctx context.Context) error { return s.DeleteCluster(ctx, api) }, []string{api}},
	}
	for _, tt := range steps {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(t.Context()); err != nil {
				t.Fatalf("change: %v", err)
			}
			if diff := cmp.Diff(tt.want, wt.next(t, len(tt.want)), opts); diff != "" {
				t.Errorf("IDs seen (-want +got):\n%s", diff)
			}
		})
	}
}

// testWatchClustersTwice runs two watches: each sees every change, and
// ending one leaves the other.
func testWatchClustersTwice(t *testing.T, s store.Store) {
	ctx := t.Context()
	web := mustCreate(ctx, t, s, "prod", "web").ID
	api := mustCreate(ctx, t, s, "prod", "api").ID
	first, second := startWatch(t, s), startWatch(t, s)

	mustSetTunnel(ctx, t, s, web, tunnelOf("hub-a", time.Minute))
	mustSetTunnel(ctx, t, s, api, tunnelOf("hub-a", time.Minute))
	for i, wt := range []*watch{first, second} {
		if diff := cmp.Diff([]string{api, web}, wt.next(t, 2)); diff != "" {
			t.Errorf("watch %d saw (-want +got):\n%s", i+1, diff)
		}
	}

	first.stop(t)
	if err := s.DeleteCluster(ctx, web); err != nil {
		t.Fatalf("DeleteCluster: %v", err)
	}
	if diff := cmp.Diff([]string{web}, second.next(t, 1)); diff != "" {
		t.Errorf("the watch left saw (-want +got):\n%s", diff)
	}
}

// testWatchClustersCancelled checks that WatchClusters returns nil when its
// context has ended before the call.
func testWatchClustersCancelled(t *testing.T, s store.Store) {
	w, ok := s.(store.Watcher)
	if !ok {
		t.Fatalf("%T does not implement store.Watcher", s)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done := make(chan error, 1) // the goroutine's result; it never waits to send
	go func() {
		done <- w.WatchClusters(ctx, func(string) {})
	}()
	timer := time.NewTimer(watchTimeout)
	defer timer.Stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("WatchClusters with an ended context = %v, want nil", err)
		}
	case <-timer.C:
		t.Fatalf("WatchClusters with an ended context did not return within %v", watchTimeout)
	}
}
