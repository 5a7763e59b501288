package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"tether.dev/tether/internal/store"
)

// The replica loops keep this replica's lease and its view of the routes
// (see routes). They run while Serve serves, plus the drain, and stop
// before it returns.

// leaseLoop renews this replica's lease every third of ReplicaLease, reads
// the live replicas, and expires the dead ones' records (which clears their
// tunnels, so requests wait for their agents to connect elsewhere). After
// the store was unreachable it records its own tunnels again, and expires
// no one until a whole lease has passed, so that every replica has renewed
// first.
func (h *Hub) leaseLoop(ctx context.Context) {
	every := h.cfg.ReplicaLease / 3
	tick := time.NewTicker(every)
	defer tick.Stop()
	var (
		failing     bool
		expireAfter time.Time // no expiring before this
	)
	for {
		now := h.cfg.Now()
		err := h.renewLease(ctx, now, &expireAfter)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				h.logger.Warn("the store is unreachable: routes stay as they were until it is back", "err", err)
			}
			failing = true
			expireAfter = time.Time{}
		case err == nil && failing:
			h.logger.Info("the store is reachable again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-h.renewNow:
		}
	}
}

// renewLease is one round of leaseLoop.
func (h *Hub) renewLease(ctx context.Context, now time.Time, expireAfter *time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ReplicaLease/3)
	defer cancel()
	self := store.Replica{Name: h.cfg.Replica, URL: h.cfg.PeerURL, ExpiresAt: now.Add(h.cfg.ReplicaLease)}
	current, err := h.cfg.Store.RenewReplica(ctx, self, now)
	if err != nil {
		return err
	}
	if expireAfter.IsZero() {
		*expireAfter = now.Add(h.cfg.ReplicaLease)
	}
	if !current {
		// New, or expired by a peer while the store was away: our tunnels'
		// records may have been cleared with it.
		h.recordTunnels(ctx)
	}
	replicas, err := h.cfg.Store.ListReplicas(ctx, now)
	if err != nil {
		return err
	}
	h.rt.setPeers(replicas, now)
	if now.Before(*expireAfter) {
		return nil
	}
	gone, err := h.cfg.Store.ExpireReplicas(ctx, now)
	if err != nil {
		return err
	}
	if len(gone) > 0 {
		h.logger.Warn("hub replicas stopped renewing their lease; their tunnels are released", "replicas", gone)
	}
	return nil
}

// recordTunnels records every live tunnel of this replica as held by it.
func (h *Hub) recordTunnels(ctx context.Context) {
	h.mu.Lock()
	conns := make([]*agentConn, 0, len(h.tunnels))
	for _, c := range h.tunnels {
		if !c.sess.GoingAway() {
			conns = append(conns, c)
		}
	}
	h.mu.Unlock()
	for _, c := range conns {
		err := h.cfg.Store.SetTunnel(ctx, c.cluster, store.Tunnel{Replica: h.cfg.Replica, ConnectedAt: c.connected})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			h.logger.Warn("record tunnel holder", "cluster", c.cluster, "err", err)
		}
	}
}

// watchLoop follows the store's change notifications: each names a cluster
// whose holder or agent key changed, and is read again by one worker, in
// order; "" means read everything.
func (h *Hub) watchLoop(ctx context.Context, w store.Watcher) {
	q := newChangeQueue()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ids, all, ok := q.next(ctx)
			if !ok {
				return
			}
			if all {
				h.readAllRoutes(ctx)
			}
			for _, id := range ids {
				h.readRoute(ctx, id)
			}
		}
	}()
	if err := w.WatchClusters(ctx, q.add); err != nil {
		h.logger.Error("watch the store for route changes", "err", err)
	}
	wg.Wait()
}

// readAllRoutes reads every holder; on failure it tries again (the store
// sends "" again when it is back).
func (h *Hub) readAllRoutes(ctx context.Context) {
	tunnels, err := h.cfg.Store.ListTunnels(ctx)
	if err != nil {
		if ctx.Err() == nil {
			h.logger.Warn("read routes", "err", err)
		}
		return
	}
	holders := make(map[string]string, len(tunnels))
	unknown := false
	for id, t := range tunnels {
		holders[id] = t.Replica
		unknown = unknown || (t.Replica != h.cfg.Replica && !h.rt.knows(t.Replica))
	}
	h.rt.replaceHolders(holders, h.cfg.Now())
	if unknown {
		h.kickLease()
	}
}

// readRoute reads one cluster's holder, and closes this replica's tunnel of
// it if its key was revoked (deleted, or enrolled anew) elsewhere.
func (h *Hub) readRoute(ctx context.Context, id string) {
	c, err := h.cfg.Store.GetCluster(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		h.rt.setHolder(id, "", h.cfg.Now())
		h.closeTunnel(id)
		return
	case err != nil:
		if ctx.Err() == nil {
			h.logger.Warn("read route", "cluster", id, "err", err)
		}
		return
	}
	h.rt.setHolder(id, c.Tunnel.Replica, h.cfg.Now())
	if c.Tunnel.Replica != "" && c.Tunnel.Replica != h.cfg.Replica && !h.rt.knows(c.Tunnel.Replica) {
		h.kickLease() // a replica newer than our list
	}
	if conn := h.lookup(id); conn != nil && !keyMatches(c, conn) {
		h.logger.Info("agent key revoked; closing its tunnel", "cluster", id)
		conn.end(disconnectRevoked)
		conn.sess.Close()
	}
}

// kickLease asks the lease loop for a round now.
func (h *Hub) kickLease() {
	select {
	case h.renewNow <- struct{}{}:
	default:
	}
}

// changeQueue collects change notifications for one worker: the store's
// callback must not block. Repeats of a pending ID are folded.
type changeQueue struct {
	mu      sync.Mutex
	ids     []string
	pending map[string]bool
	all     bool
	wake    chan struct{}
}

func newChangeQueue() *changeQueue {
	return &changeQueue{pending: map[string]bool{}, wake: make(chan struct{}, 1)}
}

func (q *changeQueue) add(id string) {
	q.mu.Lock()
	if id == "" {
		q.all, q.ids, q.pending = true, nil, map[string]bool{}
	} else if !q.all && !q.pending[id] {
		q.pending[id] = true
		q.ids = append(q.ids, id)
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// next waits for changes and takes them all; ok is false when ctx ended.
func (q *changeQueue) next(ctx context.Context) (ids []string, all, ok bool) {
	for {
		q.mu.Lock()
		ids, all = q.ids, q.all
		q.ids, q.all, q.pending = nil, false, map[string]bool{}
		q.mu.Unlock()
		if all || len(ids) > 0 {
			return ids, all, true
		}
		select {
		case <-q.wake:
		case <-ctx.Done():
			return nil, false, false
		}
	}
}
