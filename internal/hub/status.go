package hub

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/store"
)

// Connectivity is a cluster's connectivity status, with Azure Arc's
// meanings. It is derived when a cluster is read, never stored.
type Connectivity string

const (
	// StatusConnecting: registered, and the current agent key has never
	// connected (no agent yet, or one enrolled that has not dialled in).
	StatusConnecting Connectivity = "Connecting"
	// StatusConnected: a heartbeat within Config.OfflineAfter, or the
	// tunnel is up on this replica.
	StatusConnected Connectivity = "Connected"
	// StatusOffline: the agent connected once, but missed the window.
	StatusOffline Connectivity = "Offline"
	// StatusExpired: the agent key went unused for longer than
	// Config.AgentKeyMaxIdle; the hub refuses the agent until it enrolls
	// again with a new join token.
	StatusExpired Connectivity = "Expired"
)

// DefaultAgentKeyMaxIdle is Config.AgentKeyMaxIdle's default: 90 days, as
// in Azure Arc.
const DefaultAgentKeyMaxIdle = 90 * 24 * time.Hour

// connectivity derives c's status at now; live says this replica holds its
// tunnel.
func (h *Hub) connectivity(c store.Cluster, now time.Time, live bool) Connectivity {
	seen := c.Agent.LastSeenAt
	_, expired := h.keyExpired(c, now)
	switch {
	case live:
		return StatusConnected
	case expired:
		return StatusExpired
	case seen.IsZero() || seen.Before(c.Agent.EnrolledAt):
		return StatusConnecting
	case now.Sub(seen) <= h.cfg.OfflineAfter:
		return StatusConnected
	}
	return StatusOffline
}

// keyExpired reports how long c's agent key has gone unused, and whether
// that is longer than AgentKeyMaxIdle. A cluster without a key has none to
// expire.
func (h *Hub) keyExpired(c store.Cluster, now time.Time) (idle time.Duration, expired bool) {
	if !c.Enrolled() {
		return 0, false
	}
	last := c.Agent.EnrolledAt
	for _, t := range []time.Time{c.Agent.LastSeenAt, c.Agent.Status.ReportedAt} {
		if t.After(last) {
			last = t
		}
	}
	idle = now.Sub(last)
	return idle, idle > h.cfg.AgentKeyMaxIdle
}

// expiredMessage tells an agent's operator, or a caller of its cluster,
// that the agent key expired and what to do.
func (h *Hub) expiredMessage(c store.Cluster, idle time.Duration) string {
	return fmt.Sprintf("the agent key of cluster %s/%s expired after %s without contact from its agent (this hub's limit is %s); "+
		"issue a new join token (tether cluster join-token -g %s -n %s) and enroll the agent again with it, from an empty state directory",
		c.Group, c.Name, days(idle), days(h.cfg.AgentKeyMaxIdle), c.Group, c.Name)
}

// days shows a long duration in days, a short one as it is.
func days(d time.Duration) string {
	if d >= 48*time.Hour {
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	}
	return d.Round(time.Second).String()
}

// statusReportShape shows an agent.StatusReport in error messages.
const statusReportShape = `{"agentVersion":..., "kubernetesVersion":..., "nodeCount":..., "lastError":...}`

// agentStatus stores an agent's status report (POST agent.StatusPath),
// authenticated as the tunnel is. Text is made to fit, not refused: the
// report is for people, and a long error is still worth its first KiB.
func (h *Hub) agentStatus(w http.ResponseWriter, r *http.Request) {
	c, now, ok := h.authenticateAgent(w, r, func(w http.ResponseWriter, code int, _, message string) { apistatus.Write(w, code, message) })
	if !ok {
		return
	}
	var rep agent.StatusReport
	if !readJSON(w, r, &rep, statusReportShape) {
		return
	}
	if rep.NodeCount < -1 {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("nodeCount %d: want the number of nodes, or -1 when unknown", rep.NodeCount))
		return
	}
	st := store.AgentStatus{
		AgentVersion:      clipText(rep.AgentVersion, store.MaxVersionLen),
		KubernetesVersion: clipText(rep.KubernetesVersion, store.MaxVersionLen),
		NodeCount:         rep.NodeCount,
		LastError:         clipText(rep.LastError, store.MaxLastErrorLen),
		ReportedAt:        now,
	}
	err := h.cfg.Store.RecordAgentStatus(r.Context(), c.ID, st)
	switch {
	case errors.Is(err, store.ErrNotFound):
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("cluster %s was deleted from this hub; stop this agent", c.ID))
		return
	case err != nil:
		h.internalError(w, "record the agent's status", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
