package hub

import (
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
	Group    string `json:"group"`
	Name     string `json:"name"`
	Location string `json:"location,omitempty"`
	// Mode is "kubernetes-rbac" (default) or "hub-rbac".
	Mode string `json:"mode,omitempty"`
}

// ClusterView is how the admin API shows a cluster.
type ClusterView struct {
	ID                string    `json:"id"`
	Group             string    `json:"group"`
	Name              string    `json:"name"`
	Location          string    `json:"location"`
	Mode              string    `json:"mode"`
	CreatedAt         time.Time `json:"createdAt"`
	Enrolled          bool      `json:"enrolled"`
	Connected         bool      `json:"connected"`
	AgentVersion      string    `json:"agentVersion,omitempty"`
	KubernetesVersion string    `json:"kubernetesVersion,omitempty"`
	LastSeenAt        time.Time `json:"lastSeenAt,omitzero"`
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
	now := h.cfg.Now()
	c, err := h.cfg.Store.CreateCluster(r.Context(), store.Cluster{Group: req.Group, Name: req.Name, Location: req.Location, Mode: mode, CreatedAt: now})
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

func (h *Hub) listClusters(w http.ResponseWriter, r *http.Request) {
	cs, err := h.cfg.Store.ListClusters(r.Context(), store.ClusterFilter{Group: r.URL.Query().Get("group")})
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
	return ClusterView{
		ID: c.ID, Group: c.Group, Name: c.Name, Location: c.Location, Mode: string(c.Mode), CreatedAt: c.CreatedAt,
		Enrolled: c.Enrolled(), Connected: h.lookup(c.ID) != nil,
		AgentVersion: c.Agent.Version, KubernetesVersion: c.Agent.KubernetesVersion, LastSeenAt: c.Agent.LastSeenAt,
	}
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
