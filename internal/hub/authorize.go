package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
)

// caller is who sent a request to the admin API: the holder of the
// bootstrap admin token, or a signed-in principal with the role
// assignments that name it or one of its groups.
type caller struct {
	// admin: the bootstrap admin token, which may do everything.
	admin bool
	// principal is the verified signed-in caller; zero for the admin.
	principal identity.Principal
	// grants are the assignments that apply to principal (those the
	// authorize wrapper loaded: at its scope and above, or all).
	grants []access.Assignment
	// grant names the role and scope that allowed the request's action
	// (access.Decision.Grant), for the audit trail.
	grant string
}

// may decides whether the caller may do action at scope.
func (c *caller) may(action access.Action, scope string) access.Decision {
	if c.admin {
		return access.Decision{Allowed: true}
	}
	return access.Authorize(accessPrincipal(c.principal), scope, action, c.grants)
}

type callerKey struct{}

// callerOf returns the caller the authorize wrapper put in r's context.
func callerOf(r *http.Request) *caller {
	c, _ := r.Context().Value(callerKey{}).(*caller)
	return c
}

// scopeFunc names the scope a request acts on (a path of package access).
// When it returns false it has answered the request (the request names
// nothing that can exist, or is malformed).
type scopeFunc func(w http.ResponseWriter, r *http.Request) (scope string, ok bool)

// authorize wraps a handler of the admin API. The request goes ahead with
// the bootstrap admin token, or with a signed-in caller's token whose role
// assignments (its own and its groups', at the scope scopeOf names and
// above) grant action there. Anything else is answered: 401 for a missing
// or refused token, 503 when the caller's issuer cannot be reached, 403
// naming the role that would grant the action.
//
// With an empty action (and a nil scopeOf) every verified caller goes
// ahead, with all its assignments loaded: the handler decides, with
// callerOf(r).may, what to show (lists show only what the caller may
// read). scopeOf runs for the admin too, so that malformed requests are
// answered alike.
//
// Every request that changes something (not GET or HEAD) is audited when
// it is done, refused ones included.
func (h *Hub) authorize(action access.Action, scopeOf scopeFunc, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var c *caller
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			aw := &auditWriter{ResponseWriter: w}
			aw.Header().Set("X-Request-Id", newRequestID())
			w = aw
			start := h.cfg.Now()
			defer func() { h.recordChange(r, aw, c, start) }()
		}
		c, ok := h.authenticate(w, r)
		if !ok {
			return
		}
		var scope string
		if scopeOf != nil {
			if scope, ok = scopeOf(w, r); !ok {
				return
			}
		}
		if !c.admin {
			f := store.AssignmentFilter{Scope: scope, Above: scope != ""}
			grants, err := h.assignmentsOf(r.Context(), c.principal, f)
			if err != nil {
				if action != "" {
					h.metrics.authorized(authzModeAdmin, decisionError)
				}
				h.internalError(w, "read role assignments", err)
				return
			}
			c.grants = grants
		}
		if action != "" {
			d := c.may(action, scope)
			if !d.Allowed {
				h.metrics.authorized(authzModeAdmin, decisionDeny)
				h.logger.Info("admin request denied", "principal", c.principal.ID, "action", string(action), "scope", scope)
				apistatus.Write(w, http.StatusForbidden, d.Message)
				return
			}
			c.grant = d.Grant
			h.metrics.authorized(authzModeAdmin, decisionAllow)
		}
		next(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
	}
}

// authenticate finds who sent an admin API request. When it returns false
// it has answered.
func (h *Hub) authenticate(w http.ResponseWriter, r *http.Request) (*caller, bool) {
	if h.checkAdmin(r) {
		return &caller{admin: true}, true
	}
	token, ok := authheader.Bearer(r.Header.Get("Authorization"))
	if !ok || h.cfg.Verifier == nil {
		msg := "the admin API needs a bearer token: sign in (tether login), or use the hub's admin token (DATA_DIR/admin.token on the hub)"
		if h.cfg.Verifier == nil {
			msg = "the admin API needs the hub's admin token (DATA_DIR/admin.token on the hub) as a bearer token: this hub offers no sign-in"
		}
		apistatus.Write(w, http.StatusUnauthorized, msg)
		return nil, false
	}
	p, err := h.verifyCaller(r.Context(), token)
	if err != nil {
		h.refuseCaller(w, err, "sign in again (tether login), or use the hub's admin token")
		return nil, false
	}
	return &caller{principal: p}, true
}

// refuseCaller answers a request whose token verifyCaller did not accept:
// 401 for a refused token, with what to do (hint), 503 when the hub could
// not check it.
func (h *Hub) refuseCaller(w http.ResponseWriter, err error, hint string) {
	var te *identity.TokenError
	if errors.As(err, &te) {
		apistatus.Write(w, http.StatusUnauthorized, "your token was refused: "+err.Error()+"; "+hint)
		return
	}
	h.logger.Warn("verify caller token", "err", err)
	if errors.Is(err, store.ErrUnavailable) {
		apistatus.WriteRetry(w, http.StatusServiceUnavailable, "the hub could not check your token: its store is unavailable (the database is down or unreachable); retry in a few seconds", 2*time.Second)
		return
	}
	apistatus.Write(w, http.StatusServiceUnavailable, "the hub could not check your token right now ("+err.Error()+"); retry shortly")
}

// assignmentsOf returns the assignments that f selects among those naming
// p or one of its groups. The store holds only object IDs, so names that
// are not UUIDs (another issuer's group names) cannot match anything.
func (h *Hub) assignmentsOf(ctx context.Context, p identity.Principal, f store.AssignmentFilter) ([]access.Assignment, error) {
	for _, id := range append([]string{p.ID}, p.Groups...) {
		if store.ValidateUUID(id) == nil {
			f.PrincipalIDs = append(f.PrincipalIDs, id)
		}
	}
	if len(f.PrincipalIDs) == 0 {
		return nil, nil
	}
	stored, err := h.cfg.Store.ListRoleAssignments(ctx, f)
	if err != nil {
		return nil, err
	}
	out := make([]access.Assignment, 0, len(stored))
	for _, s := range stored {
		out = append(out, s.Assignment)
	}
	return out, nil
}

// accessPrincipal is a verified caller as package access sees it.
func accessPrincipal(p identity.Principal) access.Principal {
	ap := access.Principal{ID: p.ID, Type: access.PrincipalUser, Groups: p.Groups}
	if p.Type == identity.TypeServicePrincipal {
		ap.Type = access.PrincipalServicePrincipal
	}
	return ap
}

// rootScope is the scope of the hub's directory: the root.
func rootScope(http.ResponseWriter, *http.Request) (string, bool) { return "/", true }

// clusterScope is the cluster a path names (/groups/{group}/clusters/{name}).
func clusterScope(w http.ResponseWriter, r *http.Request) (string, bool) {
	group, name := r.PathValue("group"), r.PathValue("name")
	if store.ValidateName(group) != nil || store.ValidateName(name) != nil {
		writeNoCluster(w, group, name)
		return "", false
	}
	return store.ClusterID(group, name), true
}

// clusterGroupScope is the group of the cluster a ClusterRequest body
// registers.
func clusterGroupScope(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req ClusterRequest
	if !readJSON(w, r, &req, clusterRequestShape) {
		return "", false
	}
	if err := store.ValidateName(req.Group); err != nil {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("group: %v", err))
		return "", false
	}
	return "/groups/" + req.Group, true
}

// newAssignmentScope is the scope of the assignment an AssignmentRequest
// body creates.
func newAssignmentScope(w http.ResponseWriter, r *http.Request) (string, bool) {
	var req AssignmentRequest
	if !readJSON(w, r, &req, assignmentRequestShape) {
		return "", false
	}
	if _, err := access.ParseScope(req.Scope); err != nil {
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return req.Scope, true
}

// storedAssignmentScope is the scope of the stored assignment the path
// names (/api/v1/role-assignments/{id}).
func (h *Hub) storedAssignmentScope(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	a, err := h.cfg.Store.GetRoleAssignment(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		writeNoAssignment(w, id)
		return "", false
	case err != nil:
		h.internalError(w, "look up the role assignment", err)
		return "", false
	}
	return a.Scope, true
}

// maxBodyLen bounds the JSON body of an admin API request.
const maxBodyLen = 16 << 10

// readJSON decodes r's JSON body into v, refusing unknown fields and
// anything after the value, and leaves the body readable again (a
// scopeFunc and the handler both read it). shape shows the expected body in
// the 400 answer. When it returns false it has answered.
func readJSON(w http.ResponseWriter, r *http.Request, v any, shape string) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyLen+1))
	if err == nil && len(b) > maxBodyLen {
		err = fmt.Errorf("longer than %d bytes", maxBodyLen)
	}
	if err == nil {
		r.Body = io.NopCloser(bytes.NewReader(b))
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		err = dec.Decode(v)
		if err == nil && dec.More() {
			err = errors.New("more data after the JSON value")
		}
	}
	if err != nil {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("the body must be JSON %s (%v)", shape, err))
		return false
	}
	return true
}
