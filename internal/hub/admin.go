package hub

import (
	"cmp"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/store"
)

// joinTokenPrefix marks Tether join tokens, so secret scanners and people
// can recognise one.
const joinTokenPrefix = "tjt_"

// ClusterRequest is the body of POST /api/v1/clusters.
type ClusterRequest struct {
	Group string `json:"group"`
	Name  string `json:"name"`
	// Location is one of the hub's locations, by name or ID ("East US 2",
	// "eastus2"); empty means the hub's first. The cluster stores its ID.
	Location string `json:"location,omitempty"`
	// Mode is "kubernetes-rbac" (default) or "hub-rbac".
	Mode string `json:"mode,omitempty"`
}

// ClusterView is how the admin API shows a cluster.
type ClusterView struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	Name      string    `json:"name"`
	Location  string    `json:"location"`
	Mode      string    `json:"mode"`
	CreatedAt time.Time `json:"createdAt"`
	Enrolled  bool      `json:"enrolled"`
	// Connected says a tunnel is up now: on this replica, or on the one
	// the store names while its heartbeats are fresh.
	Connected bool `json:"connected"`
	// Status is the connectivity status: Connecting, Connected, Offline or
	// Expired (see Connectivity).
	Status Connectivity `json:"status"`
	// AgentVersion and KubernetesVersion are from the agent's latest status
	// report, else from its latest tunnel connection.
	AgentVersion      string `json:"agentVersion,omitempty"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// NodeCount is from the latest status report; -1 when unknown.
	NodeCount int `json:"nodeCount"`
	// LastError is the agent's latest reported problem; empty when none.
	LastError string `json:"lastError,omitempty"`
	// LastSeenAt is the latest heartbeat of the agent's tunnel.
	LastSeenAt time.Time `json:"lastSeenAt,omitzero"`
	// StatusReportedAt is when the latest status report arrived.
	StatusReportedAt time.Time `json:"statusReportedAt,omitzero"`
}

// JoinTokenView carries a new join token; it is shown once and never stored.
type JoinTokenView struct {
	Cluster   string    `json:"cluster"`
	JoinToken string    `json:"joinToken"`
	ExpiresAt time.Time `json:"expiresAt"`
}

// CreatedCluster is the answer to POST /api/v1/clusters.
type CreatedCluster struct {
	Cluster ClusterView   `json:"cluster"`
	Join    JoinTokenView `json:"join"`
}

// clusterRequestShape shows a ClusterRequest in error messages.
const clusterRequestShape = `{"group":..., "name":..., "location":..., "mode":...}`

func (h *Hub) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/clusters", h.authorize(access.ActionClustersWrite, clusterGroupScope, h.createCluster))
	mux.HandleFunc("GET /api/v1/clusters", h.authorize("", nil, h.listClusters))
	mux.HandleFunc("GET /api/v1/groups/{group}/clusters/{name}", h.authorize(access.ActionClustersRead, clusterScope, h.getCluster))
	mux.HandleFunc("DELETE /api/v1/groups/{group}/clusters/{name}", h.authorize(access.ActionClustersDelete, clusterScope, h.deleteCluster))
	mux.HandleFunc("POST /api/v1/groups/{group}/clusters/{name}/join-tokens", h.authorize(access.ActionClustersWrite, clusterScope, h.newJoinToken))
}

func (h *Hub) createCluster(w http.ResponseWriter, r *http.Request) {
	var req ClusterRequest
	if !readJSON(w, r, &req, clusterRequestShape) {
		return
	}
	mode, err := store.ParseClusterMode(req.Mode)
	if err != nil {
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	loc, ok := h.findLocation(req.Location)
	if !ok {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("location %q is not one of this hub's: %s (tether locations list)", req.Location, h.locationIDs()))
		return
	}
	now := h.cfg.Now()
	c, err := h.cfg.Store.CreateCluster(r.Context(), store.Cluster{Group: req.Group, Name: req.Name, Location: loc.ID, Mode: mode, CreatedAt: now})
	switch {
	case errors.Is(err, store.ErrInvalid):
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, store.ErrConflict):
		apistatus.Write(w, http.StatusConflict, fmt.Sprintf("cluster %s/%s already exists; issue a new join token for it instead", req.Group, req.Name))
		return
	case err != nil:
		h.internalError(w, "create the cluster", err)
		return
	}
	join, err := h.issueJoinToken(r, c.ID)
	if err != nil {
		h.internalError(w, "issue a join token", err)
		return
	}
	h.logger.Info("cluster registered", "cluster", c.ID)
	writeJSON(w, http.StatusCreated, CreatedCluster{Cluster: h.view(c), Join: join})
}

func (h *Hub) newJoinToken(w http.ResponseWriter, r *http.Request) {
	c, ok := h.clusterFromPath(w, r)
	if !ok {
		return
	}
	join, err := h.issueJoinToken(r, c.ID)
	if err != nil {
		h.internalError(w, "issue a join token", err)
		return
	}
	writeJSON(w, http.StatusCreated, join)
}

func (h *Hub) getCluster(w http.ResponseWriter, r *http.Request) {
	if c, ok := h.clusterFromPath(w, r); ok {
		writeJSON(w, http.StatusOK, h.view(c))
	}
}

// deleteCluster deletes the cluster, which revokes its agent's key, and
// closes its tunnel if this replica holds it (a replica that holds it
// closes it at its next heartbeat). The agent is then refused.
func (h *Hub) deleteCluster(w http.ResponseWriter, r *http.Request) {
	group, name := r.PathValue("group"), r.PathValue("name")
	id := store.ClusterID(group, name)
	err := h.cfg.Store.DeleteCluster(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeNoCluster(w, group, name)
		return
	case err != nil:
		h.internalError(w, "delete the cluster", err)
		return
	}
	h.closeTunnel(id)
	h.logger.Info("cluster deleted", "cluster", id)
	w.WriteHeader(http.StatusNoContent)
}

func (h *Hub) listClusters(w http.ResponseWriter, r *http.Request) {
	group := r.URL.Query().Get("group")
	if group != "" {
		if err := store.ValidateName(group); err != nil {
			apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("group: %v", err))
			return
		}
	}
	cs, err := h.cfg.Store.ListClusters(r.Context(), store.ClusterFilter{Group: group})
	if err != nil {
		h.internalError(w, "list clusters", err)
		return
	}
	// The caller sees the clusters it may read, and no error for others.
	who := callerOf(r)
	views := make([]ClusterView, 0, len(cs))
	for _, c := range cs {
		if who.may(access.ActionClustersRead, c.ID).Allowed {
			views = append(views, h.view(c))
		}
	}
	writeJSON(w, http.StatusOK, views)
}

func (h *Hub) clusterFromPath(w http.ResponseWriter, r *http.Request) (store.Cluster, bool) {
	group, name := r.PathValue("group"), r.PathValue("name")
	if store.ValidateName(group) != nil || store.ValidateName(name) != nil {
		writeNoCluster(w, group, name)
		return store.Cluster{}, false
	}
	c, err := h.cfg.Store.GetCluster(r.Context(), store.ClusterID(group, name))
	if errors.Is(err, store.ErrNotFound) {
		writeNoCluster(w, group, name)
		return store.Cluster{}, false
	}
	if err != nil {
		h.internalError(w, "look up the cluster", err)
		return store.Cluster{}, false
	}
	return c, true
}

func writeNoCluster(w http.ResponseWriter, group, name string) {
	apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("no cluster %q in group %q", name, group))
}

func (h *Hub) issueJoinToken(r *http.Request, cluster string) (JoinTokenView, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return JoinTokenView{}, err
	}
	token := joinTokenPrefix + base64.RawURLEncoding.EncodeToString(secret)
	now := h.cfg.Now()
	tok := store.JoinToken{Hash: store.TokenHash(sha256.Sum256([]byte(token))), ClusterID: cluster, CreatedAt: now, ExpiresAt: now.Add(h.cfg.JoinTokenTTL)}
	if err := h.cfg.Store.CreateJoinToken(r.Context(), tok); err != nil {
		return JoinTokenView{}, err
	}
	return JoinTokenView{Cluster: cluster, JoinToken: token, ExpiresAt: tok.ExpiresAt}, nil
}

func (h *Hub) view(c store.Cluster) ClusterView {
	live := h.lookup(c.ID) != nil
	status := h.connectivity(c, h.cfg.Now(), live)
	v := ClusterView{
		ID: c.ID, Group: c.Group, Name: c.Name, Location: c.Location, Mode: string(c.Mode), CreatedAt: c.CreatedAt,
		Enrolled: c.Enrolled(), Connected: live || (c.Tunnel.Replica != "" && status == StatusConnected), Status: status,
		AgentVersion: c.Agent.Version, KubernetesVersion: c.Agent.KubernetesVersion, NodeCount: -1,
		LastSeenAt: c.Agent.LastSeenAt,
	}
	if rep := c.Agent.Status; !rep.ReportedAt.IsZero() {
		v.NodeCount, v.LastError, v.StatusReportedAt = rep.NodeCount, rep.LastError, rep.ReportedAt
		v.AgentVersion = cmp.Or(rep.AgentVersion, v.AgentVersion)
		v.KubernetesVersion = cmp.Or(rep.KubernetesVersion, v.KubernetesVersion)
	}
	return v
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// HashToken is how the hub keeps the admin token: only its SHA-256.
func HashToken(token string) [sha256.Size]byte { return sha256.Sum256([]byte(token)) }
