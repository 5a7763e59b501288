package hub

import (
	"context"
	"errors"
	"sync"
	"time"

	"tether.dev/tether/internal/store"
)

// routes is a replica's view of which replica holds each cluster's tunnel
// and where the live replicas are reached: read from the store at start,
// kept fresh by the store's change notifications (store.Watcher) and by the
// lease loop, and kept as it was while the store is unreachable, so that
// requests to known clusters go on being forwarded through an outage.
type routes struct {
	self string

	mu sync.Mutex
	// holders maps a cluster ID to the replica holding its tunnel, as the
	// store last said.
	holders map[string]string
	// peers maps a live replica's name to its URL, from the last
	// successful ListReplicas (not judged by lease time: during a store
	// outage every lease looks expired).
	peers map[string]string
	// suspect holds replicas a forward failed to reach, until when their
	// routes are not used.
	suspect map[string]time.Time
	// lost holds clusters whose route went away recently, when: a request
	// for one waits a little for its agent to connect again.
	lost map[string]time.Time
	// synced is set once the holders were read whole.
	synced bool
	// changed is closed and replaced on every change; waiters select on it.
	changed chan struct{}
}

func newRoutes(self string) *routes {
	return &routes{self: self, holders: map[string]string{}, peers: map[string]string{},
		suspect: map[string]time.Time{}, lost: map[string]time.Time{}, changed: make(chan struct{})}
}

// notifyLocked wakes every waiter. r.mu must be held.
func (r *routes) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// setHolder records the cluster's holder ("" for none) at now.
func (r *routes) setHolder(cluster, replica string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old, had := r.holders[cluster]
	if replica == "" {
		delete(r.holders, cluster)
		if had {
			r.lost[cluster] = now
		}
	} else {
		r.holders[cluster] = replica
		delete(r.lost, cluster)
	}
	if old != replica {
		r.notifyLocked()
	}
}

// replaceHolders replaces every holder after a full read.
func (r *routes) replaceHolders(holders map[string]string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.holders {
		if _, ok := holders[c]; !ok {
			r.lost[c] = now
		}
	}
	r.holders = holders
	for c := range holders {
		delete(r.lost, c)
	}
	r.synced = true
	r.notifyLocked()
}

// setPeers replaces the live replicas after a successful ListReplicas.
func (r *routes) setPeers(replicas []store.Replica, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	peers := make(map[string]string, len(replicas))
	for _, p := range replicas {
		peers[p.Name] = p.URL
	}
	r.peers = peers
	for name, until := range r.suspect {
		if !now.Before(until) {
			delete(r.suspect, name)
		}
	}
	r.notifyLocked()
}

// isSynced reports whether the holders were read whole at least once.
func (r *routes) isSynced() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// knows reports whether name is a replica the routes know the URL of.
func (r *routes) knows(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.peers[name]
	return ok
}

// markSuspect stops routing to the replica until until, or until its
// routes change.
func (r *routes) markSuspect(name string, until time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.suspect[name] = until
	r.notifyLocked()
}

// forget drops the cluster's holder if it is still replica, which said it
// does not hold it.
func (r *routes) forget(cluster, replica string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.holders[cluster] == replica {
		delete(r.holders, cluster)
		r.lost[cluster] = now
		r.notifyLocked()
	}
}

// route is where a cluster's requests go.
type route struct {
	// peer is the holding replica, empty when none is usable.
	peer, peerURL string
	// wait says the route may appear soon: the cluster's tunnel was held a
	// moment ago, or the routes are not read yet.
	wait bool
	// changed is closed at the next change.
	changed <-chan struct{}
}

// lookup returns the route to the cluster's holder other than this replica,
// at now; lostWait is how long after a route is lost requests wait for a new
// one.
func (r *routes) lookup(cluster string, now time.Time, lostWait time.Duration) route {
	r.mu.Lock()
	defer r.mu.Unlock()
	rt := route{changed: r.changed, wait: !r.synced}
	holder, ok := r.holders[cluster]
	if ok && holder != r.self {
		url, live := r.peers[holder]
		if until, bad := r.suspect[holder]; bad && now.Before(until) {
			live = false
		}
		if live {
			rt.peer, rt.peerURL = holder, url
			return rt
		}
		// Held by a replica that is gone or unreachable: its agent is
		// connecting to another.
		rt.wait = true
	}
	if at, ok := r.lost[cluster]; ok {
		if now.Sub(at) < lostWait {
			rt.wait = true
		} else {
			delete(r.lost, cluster)
		}
	}
	return rt
}

// errNoRoute: no replica holds the cluster's tunnel.
var errNoRoute = errors.New("no replica holds the tunnel")

// target is where the gateway sends one request.
type target struct {
	local   *agentConn
	peer    string
	peerURL string
}

// findTarget returns the tunnel a request for the cluster goes through:
// this replica's own, unless it is going away, else the holding replica's.
// hops counts the replicas that forwarded the request already: a request
// is forwarded at most twice (a replica whose route was stale passes it on
// once more), so never in circles. When neither is there but one may come
// soon (the agent is moving between replicas), or when wait says so, it
// waits up to RouteWait for it. It returns errNoRoute when there is none,
// or ctx's error.
func (h *Hub) findTarget(ctx context.Context, cluster string, hops int, wait bool) (target, error) {
	var deadline <-chan time.Time
	for {
		conn := h.lookup(cluster)
		if conn != nil && !conn.sess.GoingAway() {
			return target{local: conn}, nil
		}
		// Ours going away means its agent is reconnecting.
		waiting := wait || conn != nil
		var changed <-chan struct{}
		if h.rt != nil {
			rt := h.rt.lookup(cluster, h.cfg.Now(), h.cfg.RouteWait)
			if rt.peer != "" && hops < 2 {
				return target{peer: rt.peer, peerURL: rt.peerURL}, nil
			}
			waiting = waiting || rt.wait
			changed = rt.changed
		}
		if !waiting {
			return target{}, errNoRoute
		}
		if deadline == nil {
			t := time.NewTimer(h.cfg.RouteWait)
			defer t.Stop()
			deadline = t.C
		}
		local := make(<-chan struct{})
		if conn != nil {
			local = conn.sess.Done()
		}
		select {
		case <-changed:
		case <-h.localChanged():
		case <-local:
		case <-deadline:
			return target{}, errNoRoute
		case <-ctx.Done():
			return target{}, ctx.Err()
		}
	}
}

// localChanged is closed at the next change of this replica's own tunnels.
func (h *Hub) localChanged() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tunnelsChanged
}

// notifyLocalLocked wakes requests waiting for a tunnel. h.mu must be held.
func (h *Hub) notifyLocalLocked() {
	close(h.tunnelsChanged)
	h.tunnelsChanged = make(chan struct{})
}
