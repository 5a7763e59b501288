package hub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
)

// verifyCaller verifies a signed-in caller's token. A principal of the
// embedded directory must still exist, and its groups are read from the
// store at every call, so removing a member or deleting a principal takes
// effect on the next request. Errors are as Verifier.Verify's.
func (h *Hub) verifyCaller(ctx context.Context, token string) (identity.Principal, error) {
	p, err := h.cfg.Verifier.Verify(ctx, token)
	if err != nil || h.cfg.EmbeddedIssuer == "" || p.Issuer != h.cfg.EmbeddedIssuer {
		return p, err
	}
	sp, err := h.cfg.Store.GetPrincipal(ctx, p.ID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return identity.Principal{}, &identity.TokenError{Reason: identity.ErrUnknownPrincipal, Detail: fmt.Sprintf("principal %s no longer exists in the hub's directory", p.ID)}
	case err != nil:
		return identity.Principal{}, fmt.Errorf("look up principal %s: %w", p.ID, err)
	}
	p.Name = sp.DisplayName
	if p.Groups, err = h.cfg.Store.GroupsOf(ctx, p.ID); err != nil {
		return identity.Principal{}, fmt.Errorf("look up the groups of %s: %w", p.ID, err)
	}
	return p, nil
}

// signedIn verifies a signed-in caller's token, decides whether the caller
// may connect to the cluster, and returns the assertion that has the agent
// impersonate the caller. When it returns denied, it has answered.
//
// Kubernetes-RBAC mode: the agent impersonates the object ID and every
// directory group (no limit: the assertion carries them all); the API
// server decides with its own bindings. Hub-RBAC mode: the groups are the
// few that access.KubernetesGroups derives from the caller's assignments,
// and the agent's bindings give them their meaning.
func (h *Hub) signedIn(w http.ResponseWriter, r *http.Request, clusterID, token string) (a identity.Assertion, denied bool) {
	key := decisionKey(token, clusterID)
	// stale stands in for the store while it is unreachable: the decision
	// made for this very token and cluster a short while ago.
	stale := func(err error) bool {
		if !errors.Is(err, store.ErrUnavailable) {
			return false
		}
		var ok bool
		if a, ok = h.decisions.get(key, h.cfg.Now()); ok {
			h.metrics.authorized(authzModeUnknown, decisionAllow)
			h.logger.Warn("store unavailable: a signed-in caller is allowed on a recent decision", "cluster", clusterID, "principal", a.Subject)
			rec := recordOf(r)
			if rec.event.PrincipalID == "" {
				rec.setPrincipal(a.Subject, "", "")
			}
			rec.event.AuthMode, rec.event.Reason = string(a.Mode), "a decision of the last minutes (the store is unavailable)"
		}
		return ok
	}
	p, err := h.verifyCaller(r.Context(), token)
	if err != nil {
		if stale(err) {
			return a, false
		}
		h.refuseCaller(w, err, "sign in again (tether login)")
		return a, true
	}
	principal := accessPrincipal(p)
	rec := recordOf(r)
	rec.setPrincipal(p.ID, string(principal.Type), p.Name)
	cluster, err := h.cfg.Store.GetCluster(r.Context(), clusterID)
	if err != nil {
		if stale(err) {
			return a, false
		}
		h.metrics.authorized(authzModeUnknown, decisionError)
		h.internalError(w, "look up the cluster", err)
		return a, true
	}
	assignments, err := h.assignmentsOf(r.Context(), p, store.AssignmentFilter{Scope: clusterID, Above: true, Below: true})
	if err != nil {
		if stale(err) {
			return a, false
		}
		h.metrics.authorized(clusterAuthzMode(cluster.Mode), decisionError)
		h.internalError(w, "read role assignments", err)
		return a, true
	}
	d := access.Connect(principal, clusterID, assignments)
	if !d.Allowed {
		h.metrics.authorized(clusterAuthzMode(cluster.Mode), decisionDeny)
		h.logger.Info("connect denied", "cluster", clusterID, "principal", p.ID)
		apistatus.Write(w, http.StatusForbidden, d.Message)
		return a, true
	}
	rec.event.AuthMode, rec.event.Reason = string(cluster.Mode), d.Grant
	a = identity.Assertion{Cluster: clusterID, Mode: identity.ModeImpersonate, Subject: p.ID}
	switch cluster.Mode {
	case store.ModeHubRBAC:
		a.Groups = access.KubernetesGroups(principal, clusterID, assignments)
	default:
		a.Groups = p.Groups
	}
	if len(a.Groups) > identity.MaxGroups {
		h.metrics.authorized(clusterAuthzMode(cluster.Mode), decisionDeny)
		apistatus.Write(w, http.StatusForbidden, fmt.Sprintf("principal %s is in %d groups, more than the hub passes on (%d)", p.ID, len(a.Groups), identity.MaxGroups))
		return a, true
	}
	h.decisions.put(key, a, h.cfg.Now(), p.Expiry)
	h.metrics.authorized(clusterAuthzMode(cluster.Mode), decisionAllow)
	return a, false
}
