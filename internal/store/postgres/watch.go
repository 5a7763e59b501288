package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// notifyChannel is the channel on which the trigger on clusters notifies
// (see migrations/0001_init.sql).
const notifyChannel = "tether_clusters"

// Reconnection backoff of a watch: exponential from minBackoff, capped at
// maxBackoff, with full jitter; it starts over after a connection that
// lasted stablePeriod.
const (
	minBackoff   = 100 * time.Millisecond
	maxBackoff   = 5 * time.Second
	stablePeriod = 30 * time.Second
)

// WatchClusters implements store.Watcher across processes. It holds a
// connection of its own, outside the pool, that LISTENs on
// tether_clusters: the trigger on clusters notifies there with the
// cluster's ID when its tunnel holder or agent key is written (SetTunnel,
// ClearTunnel when it clears, RemoveReplica and ExpireReplicas for each
// tunnel they clear, RedeemJoinToken) or when it is deleted, by any
// replica. It calls fn in the calling goroutine: with "" after each
// successful LISTEN (the first and after every reconnection, since
// notifications sent while it was not listening are lost), then with each
// notified ID, in commit order. When the connection fails it reconnects
// with capped exponential backoff and jitter, for as long as it takes.
// WatchClusters returns nil when ctx ends, and an error if s is or gets
// closed; either way its connection is closed.
func (s *Store) WatchClusters(ctx context.Context, fn func(clusterID string)) error {
	if ctx.Err() != nil {
		return nil
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("watch clusters: %w", errClosed)
	}
	s.watches.Add(1)
	s.mu.Unlock()
	defer s.watches.Done()

	// watchCtx ends with ctx or with Close.
	watchCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() {
		select {
		case <-s.done:
			cancel()
		case <-watchCtx.Done():
		}
	})

	attempt := 0
	for {
		started := time.Now()
		listened := s.listen(watchCtx, fn)
		switch {
		case ctx.Err() != nil:
			return nil
		case watchCtx.Err() != nil:
			return fmt.Errorf("watch clusters: %w", errClosed)
		}
		if listened && time.Since(started) >= stablePeriod {
			attempt = 0
		}
		timer := time.NewTimer(backoff(attempt))
		attempt++
		select {
		case <-watchCtx.Done():
			timer.Stop()
		case <-timer.C:
		}
	}
}

// listen connects, LISTENs, calls fn("") and then fn with each
// notification's cluster ID, until the connection fails or ctx ends. It
// reports whether it got as far as listening, and closes its connection.
func (s *Store) listen(ctx context.Context, fn func(clusterID string)) (listened bool) {
	conn, err := pgx.ConnectConfig(ctx, s.connConfig)
	if err != nil {
		return false
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		_ = conn.Close(closeCtx) // the connection is done with either way
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+notifyChannel); err != nil {
		return false
	}
	fn("")
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true
		}
		fn(n.Payload)
	}
}

// backoff returns the wait before reconnection attempt n (0, 1, ...): a
// random duration up to minBackoff·2ⁿ, capped at maxBackoff.
func backoff(n int) time.Duration {
	ceiling := maxBackoff
	if n < 16 {
		ceiling = min(maxBackoff, minBackoff<<n)
	}
	return rand.N(ceiling) + 1
}
