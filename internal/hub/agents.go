package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

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
)

// agentConn is one live tunnel.
type agentConn struct {
	cluster   string
	sess      *tunnel.Session
	gw        *clusterGateway
	connected time.Time
}

// enroll redeems a join token for the public key the agent generated.
func (h *Hub) enroll(w http.ResponseWriter, r *http.Request) {
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
	h.logger.Info("agent enrolled", "cluster", cluster.ID, "remote_addr", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(agent.EnrollResponse{Cluster: cluster.ID, HubID: h.cfg.HubID, HubKeys: h.hubKeys})
}

// tunnel authenticates an agent's proof and takes its tunnel.
func (h *Hub) tunnel(w http.ResponseWriter, r *http.Request) {
	if h.draining.Load() {
		tunnel.Refuse(w, http.StatusServiceUnavailable, "this hub replica is draining; connect again")
		return
	}
	proof := r.Header.Get("Authorization")
	claims, err := agentkey.Parse(proof)
	if err != nil {
		tunnel.Refuse(w, http.StatusUnauthorized, "agent authentication: "+err.Error())
		return
	}
	cluster, err := h.cfg.Store.GetCluster(r.Context(), claims.Cluster)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid) {
		tunnel.Refuse(w, http.StatusNotFound, fmt.Sprintf("cluster %s is not registered on this hub (deleted?)", claims.Cluster))
		return
	}
	if err != nil {
		h.logger.Error("look up cluster for tunnel", "cluster", claims.Cluster, "err", err)
		tunnel.Refuse(w, http.StatusServiceUnavailable, "the hub could not read its store; retry")
		return
	}
	if !cluster.Enrolled() {
		tunnel.Refuse(w, http.StatusUnauthorized, "cluster "+cluster.ID+" has no enrolled agent key; enroll with a join token")
		return
	}
	now := h.cfg.Now()
	if _, err := agentkey.Verify(proof, ed25519.PublicKey(cluster.Agent.PublicKey), r.Host, now, &h.replay); err != nil {
		h.logger.Warn("agent proof refused", "cluster", cluster.ID, "remote_addr", r.RemoteAddr, "err", err)
		tunnel.Refuse(w, http.StatusUnauthorized, "agent authentication: "+err.Error())
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
		AgentVersion:      clip(r.Header.Get(agent.HeaderAgentVersion)),
		KubernetesVersion: clip(r.Header.Get(agent.HeaderKubernetesVersion)),
		At:                now,
	}
	conn := &agentConn{cluster: cluster.ID, sess: sess, gw: newClusterGateway(cluster.ID, sess, h.logger), connected: now}
	h.register(conn, hb)
}

// register makes conn the cluster's tunnel (the newest connection wins),
// records it in the store, and watches it until it dies.
func (h *Hub) register(conn *agentConn, hb store.Heartbeat) {
	h.mu.Lock()
	old := h.tunnels[conn.cluster]
	h.tunnels[conn.cluster] = conn
	h.wg.Add(1)
	h.mu.Unlock()
	if old != nil {
		// Let in-flight requests finish on the old tunnel; its idle
		// connections would keep the agent waiting for nothing.
		old.sess.GoAway()
		old.gw.close()
	}
	h.heartbeat(conn.cluster, hb)
	holder := store.Tunnel{Replica: h.cfg.Replica, ConnectedAt: conn.connected}
	h.storeOp("record tunnel holder", conn.cluster, func(ctx context.Context) error {
		return h.cfg.Store.SetTunnel(ctx, conn.cluster, holder)
	})
	h.logger.Info("agent connected", "cluster", conn.cluster, "agent_version", hb.AgentVersion, "kubernetes_version", hb.KubernetesVersion)

	go func() {
		defer h.wg.Done()
		tick := time.NewTicker(h.cfg.HeartbeatInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				hb.At = h.cfg.Now()
				h.heartbeat(conn.cluster, hb)
			case <-conn.sess.Done():
				h.unregister(conn, hb, holder)
				return
			}
		}
	}()
}

func (h *Hub) unregister(conn *agentConn, hb store.Heartbeat, holder store.Tunnel) {
	h.mu.Lock()
	if h.tunnels[conn.cluster] == conn {
		delete(h.tunnels, conn.cluster)
	}
	h.mu.Unlock()
	conn.gw.close()
	hb.At = h.cfg.Now()
	h.heartbeat(conn.cluster, hb)
	h.storeOp("clear tunnel holder", conn.cluster, func(ctx context.Context) error {
		_, err := h.cfg.Store.ClearTunnel(ctx, conn.cluster, holder)
		return err
	})
	h.logger.Info("agent disconnected", "cluster", conn.cluster, "err", conn.sess.Err())
}

func (h *Hub) heartbeat(cluster string, hb store.Heartbeat) {
	h.storeOp("record heartbeat", cluster, func(ctx context.Context) error {
		return h.cfg.Store.RecordHeartbeat(ctx, cluster, hb)
	})
}

// storeOp runs a background store write with its own timeout, logging a
// failure (a cluster deleted meanwhile is not one).
func (h *Hub) storeOp(what, cluster string, op func(context.Context) error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := op(ctx); err != nil && !errors.Is(err, store.ErrNotFound) {
		h.logger.Warn(what, "cluster", cluster, "err", err)
	}
}

func (h *Hub) lookup(cluster string) *agentConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.tunnels[cluster]
}

func (h *Hub) goAwayAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.tunnels {
		c.sess.GoAway()
		c.gw.close()
	}
}

func (h *Hub) closeAll() {
	h.mu.Lock()
	conns := make([]*agentConn, 0, len(h.tunnels))
	for _, c := range h.tunnels {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		c.sess.Close()
	}
}

func (h *Hub) internalError(w http.ResponseWriter, what string, err error) {
	h.logger.Error(what, "err", err)
	apistatus.Write(w, http.StatusInternalServerError, "the hub failed to "+what+"; see the hub's log")
}

// clip bounds agent-reported text before it reaches the store.
func clip(s string) string {
	if len(s) > store.MaxVersionLen {
		return s[:store.MaxVersionLen]
	}
	return s
}
