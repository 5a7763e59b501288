package hub

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/tunnel"
)

const (
	enrollPath = agent.EnrollPath
	tunnelPath = agent.TunnelPath
	statusPath = agent.StatusPath
)

// agentConn is one live tunnel. Its fields are set before it is
// registered and read-only from then on, but for endReason.
type agentConn struct {
	cluster string
	// key is the agent key the tunnel was authenticated with.
	key       []byte
	sess      *tunnel.Session
	gw        *clusterGateway
	connected time.Time
	// hb is the heartbeat recorded when the tunnel connected: the versions
	// its agent reported. Later heartbeats differ only in At.
	hb store.Heartbeat
	// endReason is why the hub ended the tunnel (a disconnect reason of
	// tether_hub_agent_disconnects_total), set by the first to end it; nil
	// when the agent or the network did.
	endReason atomic.Pointer[string]
}

// end records why the hub ends the tunnel, unless a reason is already
// recorded.
func (c *agentConn) end(reason string) { c.endReason.CompareAndSwap(nil, &reason) }

// disconnectReason is the tunnel's disconnect reason, once it has ended.
func (c *agentConn) disconnectReason() string {
	if r := c.endReason.Load(); r != nil {
		return *r
	}
	if errors.Is(c.sess.Err(), tunnel.ErrKeepAliveTimeout) {
		return disconnectKeepAlive
	}
	return disconnectClosed
}

// enroll redeems a join token for the public key the agent generated.
func (h *Hub) enroll(w http.ResponseWriter, r *http.Request) {
	aw := &auditWriter{ResponseWriter: w}
	w = aw
	var clusterID string
	defer func(start time.Time) {
		reason := "the join token redeemed"
		if aw.status >= 400 {
			reason = statusText(aw.errBody, "")
		}
		h.recordEnroll(r, start, clusterID, aw.status, reason)
	}(h.cfg.Now())
	token, ok := authheader.Bearer(r.Header.Get("Authorization"))
	if !ok || token == "" {
		apistatus.Write(w, http.StatusUnauthorized, "enrollment needs the cluster's join token as a bearer token")
		return
	}
	var req agent.EnrollRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 16<<10)).Decode(&req); err != nil {
		apistatus.Write(w, http.StatusBadRequest, "enrollment body must be JSON with the agent's publicKey")
		return
	}
	pub, err := base64.StdEncoding.DecodeString(req.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		apistatus.Write(w, http.StatusBadRequest, "publicKey must be a standard-base64 Ed25519 public key (32 bytes)")
		return
	}
	cluster, err := h.cfg.Store.RedeemJoinToken(r.Context(), store.TokenHash(sha256.Sum256([]byte(token))), h.cfg.Now(), pub)
	switch {
	case errors.Is(err, store.ErrTokenInvalid):
		apistatus.Write(w, http.StatusUnauthorized, "the join token is not valid: check it was copied whole, or issue a new one for the cluster")
		return
	case errors.Is(err, store.ErrTokenUsed):
		apistatus.Write(w, http.StatusGone, "the join token was already used: a join token enrolls one agent once; issue a new one for the cluster")
		return
	case errors.Is(err, store.ErrTokenExpired):
		apistatus.Write(w, http.StatusGone, "the join token has expired: issue a new one for the cluster")
		return
	case err != nil:
		h.internalError(w, "redeem join token", err)
		return
	}
	clusterID = cluster.ID
	resp := agent.EnrollResponse{Cluster: cluster.ID, HubID: h.cfg.HubID, HubKeys: h.hubKeys}
	if loc, ok := h.findLocation(cluster.Location); ok {
		resp.TunnelURL = loc.URL
	} else {
		// Registered before locations were checked, or its location was
		// removed from the hub: the agent keeps the URL it enrolled at.
		h.logger.Warn("cluster location unknown; agent keeps its enrollment URL", "cluster", cluster.ID, "location", cluster.Location)
	}
	h.logger.Info("agent enrolled", "cluster", cluster.ID, "remote_addr", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// refuser answers a refused agent request with a code and a Status whose
// message the agent's operator reads; reason is the refusal's reason of
// tether_hub_agent_connect_refusals_total.
type refuser func(w http.ResponseWriter, code int, reason, message string)

// authenticateAgent checks the agent proof in r's Authorization header (see
// package agentkey) against the key its cluster enrolled, refusing nonces
// already seen, and refuses a key past AgentKeyMaxIdle. When it returns
// false it has answered with refuse. now is the time the proof was checked.
func (h *Hub) authenticateAgent(w http.ResponseWriter, r *http.Request, refuse refuser) (c store.Cluster, now time.Time, ok bool) {
	proof := r.Header.Get("Authorization")
	claims, err := agentkey.Parse(proof)
	if err != nil {
		refuse(w, http.StatusUnauthorized, refusedMalformed, "agent authentication: "+err.Error())
		return store.Cluster{}, now, false
	}
	c, err = h.cfg.Store.GetCluster(r.Context(), claims.Cluster)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		refuse(w, http.StatusNotFound, refusedUnknown, fmt.Sprintf(
			"cluster %s is not registered on this hub: it was deleted, or never registered; stop this agent, or register the cluster again (tether cluster create) and enroll the agent with the new join token from an empty state directory", claims.Cluster))
		return store.Cluster{}, now, false
	}
	if err != nil {
		h.logger.Error("look up cluster of agent", "cluster", claims.Cluster, "err", err)
		refuse(w, http.StatusServiceUnavailable, refusedStoreFailure, "the hub could not read its store; retry")
		return store.Cluster{}, now, false
	}
	if !c.Enrolled() {
		refuse(w, http.StatusUnauthorized, refusedNotEnrolled, "cluster "+c.ID+" has no enrolled agent key; enroll with a join token")
		return store.Cluster{}, now, false
	}
	now = h.cfg.Now()
	if _, err := agentkey.Verify(proof, ed25519.PublicKey(c.Agent.PublicKey), r.Host, now, &h.replay); err != nil {
		h.logger.Warn("agent proof refused", "cluster", c.ID, "remote_addr", r.RemoteAddr, "err", err)
		refuse(w, http.StatusUnauthorized, refusedBadProof, "agent authentication: "+err.Error())
		return store.Cluster{}, now, false
	}
	if idle, expired := h.keyExpired(c, now); expired {
		h.logger.Warn("expired agent key refused", "cluster", c.ID, "remote_addr", r.RemoteAddr, "idle", idle.String())
		refuse(w, http.StatusForbidden, refusedExpiredKey, h.expiredMessage(c, idle))
		return store.Cluster{}, now, false
	}
	return c, now, true
}

// tunnel authenticates an agent's proof and takes its tunnel.
func (h *Hub) tunnel(w http.ResponseWriter, r *http.Request) {
	refuse := func(w http.ResponseWriter, code int, reason, message string) {
		h.metrics.agentRefusals.WithLabelValues(reason).Inc()
		tunnel.Refuse(w, code, message)
	}
	if h.draining.Load() {
		refuse(w, http.StatusServiceUnavailable, refusedDraining, "this hub replica is draining; connect again")
		return
	}
	cluster, now, ok := h.authenticateAgent(w, r, refuse)
	if !ok {
		return
	}
	// The agent learns its cluster's authorization mode from the 101.
	w.Header().Set(agent.HeaderClusterMode, string(cluster.Mode))
	sess, err := tunnel.Accept(w, r, h.cfg.Tunnel)
	if err != nil {
		h.logger.Warn("tunnel upgrade failed", "cluster", cluster.ID, "err", err)
		return
	}
	hb := store.Heartbeat{
		AgentVersion:      clipText(r.Header.Get(agent.HeaderAgentVersion), store.MaxVersionLen),
		KubernetesVersion: clipText(r.Header.Get(agent.HeaderKubernetesVersion), store.MaxVersionLen),
		At:                now,
	}
	conn := &agentConn{cluster: cluster.ID, key: cluster.Agent.PublicKey, sess: sess, gw: newClusterGateway(cluster.ID, sess, h.metrics, h.logger), connected: now, hb: hb}
	h.register(conn)
}

// register makes conn the cluster's tunnel (the newest connection wins),
// records it in the store, and unregisters it when it ends. While it lives,
// heartbeatLoop records its heartbeats and checks its key.
func (h *Hub) register(conn *agentConn) {
	h.mu.Lock()
	old := h.tunnels[conn.cluster]
	h.tunnels[conn.cluster] = conn
	h.notifyLocalLocked()
	h.wg.Add(1) // done by the unregistering below
	h.mu.Unlock()
	h.metrics.agentConnects.Inc()
	h.metrics.agentSessions.Inc()
	if old != nil {
		// Let in-flight requests finish on the old tunnel; its idle
		// connections would keep the agent waiting for nothing.
		old.end(disconnectReplaced)
		old.sess.GoAway()
		old.gw.close()
	}
	if !h.keyCurrent(conn) {
		// Deleted or enrolled anew since its agent authenticated: it is
		// unregistered below.
		conn.end(disconnectRevoked)
		conn.sess.Close()
	}
	holder := store.Tunnel{Replica: h.cfg.Replica, ConnectedAt: conn.connected}
	h.storeOp("record tunnel holder and heartbeat", conn.cluster, func(ctx context.Context) error {
		return h.cfg.Store.RecordConnection(ctx, conn.cluster, holder, conn.hb)
	})
	h.logger.Info("agent connected", "cluster", conn.cluster, "agent_version", conn.hb.AgentVersion, "kubernetes_version", conn.hb.KubernetesVersion)
	// Registered last, so that clearing the holder follows recording it.
	conn.sess.AfterEnd(func() {
		defer h.wg.Done()
		h.unregister(conn, holder)
	})
}

func (h *Hub) unregister(conn *agentConn, holder store.Tunnel) {
	h.mu.Lock()
	if h.tunnels[conn.cluster] == conn {
		delete(h.tunnels, conn.cluster)
		h.notifyLocalLocked()
	}
	h.mu.Unlock()
	reason := conn.disconnectReason()
	h.metrics.agentSessions.Dec()
	h.metrics.agentDisconnects.WithLabelValues(reason).Inc()
	conn.gw.close()
	hb := conn.hb
	hb.At = h.cfg.Now()
	h.heartbeat(conn.cluster, hb)
	h.storeOp("clear tunnel holder", conn.cluster, func(ctx context.Context) error {
		_, err := h.cfg.Store.ClearTunnel(ctx, conn.cluster, holder)
		return err
	})
	h.logger.Info("agent disconnected", "cluster", conn.cluster, "reason", reason, "err", conn.sess.Err())
}

func (h *Hub) heartbeat(cluster string, hb store.Heartbeat) {
	h.storeOp("record heartbeat", cluster, func(ctx context.Context) error {
		return h.cfg.Store.RecordHeartbeat(ctx, cluster, hb)
	})
}

// heartbeatLoop runs heartbeats every HeartbeatInterval until ctx ends.
func (h *Hub) heartbeatLoop(ctx context.Context) {
	tick := time.NewTicker(h.cfg.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		h.heartbeats()
	}
}

// heartbeats checks the agent keys of all this replica's tunnels with one
// store read and closes those whose key was revoked (their cluster deleted,
// or its agent enrolled anew, through another replica: the agent is
// refused when it comes back), then records the others' heartbeats with
// one store write. When the store cannot say, the tunnels stay.
func (h *Hub) heartbeats() {
	conns := h.localTunnels()
	if len(conns) == 0 {
		return
	}
	ids := make([]string, len(conns))
	for i, c := range conns {
		ids[i] = c.cluster
	}
	var keys map[string][]byte
	keysErr := h.storeOps("check agent keys", len(ids), func(ctx context.Context) (err error) {
		keys, err = h.cfg.Store.ListAgentKeys(ctx, ids)
		return err
	})
	now := h.cfg.Now()
	hbs := make(map[string]store.Heartbeat, len(conns))
	var revoked []*agentConn
	for _, c := range conns {
		if key, ok := keys[c.cluster]; keysErr == nil && (!ok || !bytes.Equal(key, c.key)) {
			h.logger.Info("agent key revoked; closing its tunnel", "cluster", c.cluster)
			revoked = append(revoked, c)
			continue
		}
		hb := c.hb
		hb.At = now
		hbs[c.cluster] = hb
	}
	h.storeOps("record heartbeats", len(hbs), func(ctx context.Context) error {
		return h.cfg.Store.RecordHeartbeats(ctx, hbs)
	})
	// Each is unregistered when it has ended.
	inParallel(revoked, func(c *agentConn) {
		c.end(disconnectRevoked)
		c.sess.Close()
	})
}

// keyCurrent reports whether conn's cluster still exists with the key its
// tunnel was authenticated with: false once the cluster is deleted (which
// revokes the key) or its agent enrolled anew. When the store cannot say,
// the tunnel stays.
func (h *Hub) keyCurrent(conn *agentConn) bool {
	var c store.Cluster
	err := h.storeOp("check agent key", conn.cluster, func(ctx context.Context) (err error) {
		c, err = h.cfg.Store.GetCluster(ctx, conn.cluster)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false
	case err != nil:
		return true
	}
	return keyMatches(c, conn)
}

// keyMatches reports whether conn was authenticated with c's agent key.
func keyMatches(c store.Cluster, conn *agentConn) bool {
	return bytes.Equal(c.Agent.PublicKey, conn.key)
}

// storeOp runs a background store operation with its own timeout, logging
// a failure (a cluster deleted meanwhile is not one), and returns its error.
func (h *Hub) storeOp(what, cluster string, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := op(ctx)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		h.logger.Warn(what, "cluster", cluster, "err", err)
	}
	return err
}

// storeOps is storeOp for an operation on n clusters at once.
func (h *Hub) storeOps(what string, n int, op func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := op(ctx)
	if err != nil {
		h.logger.Warn(what, "clusters", n, "err", err)
	}
	return err
}

func (h *Hub) lookup(cluster string) *agentConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tunnels[cluster]
}

// closeTunnel closes the cluster's tunnel if this replica holds it; it is
// then unregistered.
func (h *Hub) closeTunnel(cluster string) {
	if conn := h.lookup(cluster); conn != nil {
		conn.end(disconnectRevoked)
		conn.sess.Close()
	}
}

// goAwayAll asks every agent to reconnect elsewhere, and returns how many
// it asked. The GoAways are sent outside h.mu, several at once: each waits
// for its frame to be written.
func (h *Hub) goAwayAll() int {
	conns := h.localTunnels()
	inParallel(conns, func(c *agentConn) {
		c.end(disconnectDrain)
		c.sess.GoAway()
		c.gw.close()
	})
	h.mu.Lock()
	h.notifyLocalLocked() // requests waiting on these look elsewhere
	h.mu.Unlock()
	return len(conns)
}

// maxParallel bounds the goroutines of inParallel.
const maxParallel = 64

// inParallel calls f on each of conns, at most maxParallel at a time, and
// returns when every call has.
func inParallel(conns []*agentConn, f func(*agentConn)) {
	slots := make(chan struct{}, maxParallel) // capacity: the bound
	var wg sync.WaitGroup
	for _, c := range conns {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			f(c)
		})
	}
	wg.Wait()
}

// localTunnels returns the tunnels this replica holds now.
func (h *Hub) localTunnels() []*agentConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	conns := make([]*agentConn, 0, len(h.tunnels))
	for _, c := range h.tunnels {
		conns = append(conns, c)
	}
	return conns
}

func (h *Hub) closeAll() {
	conns := h.localTunnels()
	for _, c := range conns {
		c.end(disconnectShutdown)
		c.sess.Close()
	}
}

func (h *Hub) internalError(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, store.ErrUnavailable) {
		h.logger.Warn(what, "err", err)
		apistatus.WriteRetry(w, http.StatusServiceUnavailable, "the hub could not "+what+": its store is unavailable (the database is down or unreachable); retry in a few seconds", 2*time.Second)
		return
	}
	h.logger.Error(what, "err", err)
	apistatus.Write(w, http.StatusInternalServerError, "the hub failed to "+what+"; see the hub's log")
}

// clipText makes agent-reported text fit the store: valid UTF-8, control
// characters (newlines included) as spaces, at most max bytes, cut at a
// character boundary.
func clipText(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
