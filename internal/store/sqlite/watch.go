package sqlite

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// maxWatchQueue bounds the cluster IDs queued for one watch whose callback
// has not caught up. A queue that would grow past it is dropped whole and
// the watch is told "" (anything may have changed) instead, so a slow
// watch costs a re-read, never memory without bound or a blocked writer.
const maxWatchQueue = 1024

// errClosed is what WatchClusters returns when the store is closed.
var errClosed = errors.New("store is closed")

// watcher is one WatchClusters call's queue of changed cluster IDs, filled
// by writers (publish) and drained by the watching goroutine.
type watcher struct {
	// wake has room for one signal: a pending one says the queue may hold
	// IDs, which is all the watching goroutine needs to know.
	wake chan struct{}

	mu sync.Mutex // guards queue and overflowed
	// queue holds the IDs not yet delivered, in commit order.
	queue []string
	// overflowed is set when queue was dropped for growing past
	// maxWatchQueue; IDs published since are dropped too, until the
	// watching goroutine takes the queue and delivers "".
	overflowed bool
}

// push queues ids and wakes the watching goroutine. It never blocks.
func (w *watcher) push(ids []string) {
	w.mu.Lock()
	switch {
	case w.overflowed:
	case len(w.queue)+len(ids) > maxWatchQueue:
		w.queue, w.overflowed = nil, true
	default:
		w.queue = append(w.queue, ids...)
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// take empties the queue and returns what it held: "" alone if it
// overflowed.
func (w *watcher) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := w.queue
	if w.overflowed {
		ids = []string{""}
	}
	w.queue, w.overflowed = nil, false
	return ids
}

// publish hands the IDs of the clusters that a committed write changed to
// every watch. Writers call it before releasing the write slot, so each
// watch queues IDs in commit order.
func (s *Store) publish(ids []string) {
	if len(ids) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.watchers {
		w.push(ids)
	}
}

// WatchClusters implements store.Watcher for the changes made through s:
// SetTunnel, ClearTunnel when it clears, RemoveReplica and ExpireReplicas
// for each tunnel they clear, RedeemJoinToken and DeleteCluster. It calls
// fn in the calling goroutine: first with "", once the watch is registered,
// then with each changed cluster's ID. Writers never wait for fn: IDs queue
// for it, and if more than maxWatchQueue (1024) are waiting, they are
// dropped and fn gets "" instead. WatchClusters returns nil when ctx ends,
// and an error if s is or gets closed.
func (s *Store) WatchClusters(ctx context.Context, fn func(clusterID string)) error {
	if ctx.Err() != nil {
		return nil
	}
	w := &watcher{wake: make(chan struct{}, 1)}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		return fmt.Errorf("watch clusters: %w", errClosed)
	default:
	}
	s.watchers[w] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.watchers, w)
		s.mu.Unlock()
	}()

	fn("")
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return fmt.Errorf("watch clusters: %w", errClosed)
		case <-w.wake:
		}
		for _, id := range w.take() {
			if ctx.Err() != nil {
				return nil
			}
			fn(id)
		}
	}
}
