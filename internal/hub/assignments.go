package hub

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/store"
)

// AssignmentRequest is the body of POST /api/v1/role-assignments.
type AssignmentRequest struct {
	// Role is a role's ID or display name ("Cluster User", "kubernetes-viewer").
	Role string `json:"role"`
	// Assignee is the principal's object ID.
	Assignee string `json:"assignee"`
	// AssigneeType is user (default), servicePrincipal or group.
	AssigneeType string `json:"assigneeType,omitempty"`
	Scope        string `json:"scope"`
}

// assignmentRequestShape shows an AssignmentRequest in error messages.
const assignmentRequestShape = `{"role":..., "assignee":..., "assigneeType":..., "scope":...}`

// AssignmentView is how the admin API shows a role assignment.
type AssignmentView struct {
	ID            string    `json:"id"`
	Role          string    `json:"role"`
	RoleName      string    `json:"roleName"`
	PrincipalID   string    `json:"principalId"`
	PrincipalType string    `json:"principalType"`
	Scope         string    `json:"scope"`
	CreatedAt     time.Time `json:"createdAt"`
}

// RoleView is how the admin API shows a role definition.
type RoleView struct {
	ID          string   `json:"id"`
	Name        string   `json:"name"`
	ArcName     string   `json:"arcName,omitempty"`
	Description string   `json:"description"`
	Actions     []string `json:"actions,omitempty"`
	ClusterRole string   `json:"kubernetesClusterRole,omitempty"`
}

func (h *Hub) assignmentRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/role-definitions", h.authorize("", nil, h.listRoles))
	mux.HandleFunc("POST /api/v1/role-assignments", h.authorize(access.ActionAssignmentsWrite, newAssignmentScope, h.createAssignment))
	mux.HandleFunc("GET /api/v1/role-assignments", h.authorize("", nil, h.listAssignments))
	mux.HandleFunc("DELETE /api/v1/role-assignments/{id}", h.authorize(access.ActionAssignmentsWrite, h.storedAssignmentScope, h.deleteAssignment))
}

func (h *Hub) listRoles(w http.ResponseWriter, _ *http.Request) {
	var out []RoleView
	for _, r := range access.RoleDefinitions() {
		v := RoleView{ID: r.ID, Name: r.Name, ArcName: r.ArcName, Description: r.Description, ClusterRole: r.ClusterRole}
		for _, a := range r.Actions {
			v.Actions = append(v.Actions, string(a))
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) createAssignment(w http.ResponseWriter, r *http.Request) {
	var req AssignmentRequest
	if !readJSON(w, r, &req, assignmentRequestShape) {
		return
	}
	role, err := access.LookupRole(req.Role)
	if err != nil {
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	if req.AssigneeType == "" {
		req.AssigneeType = string(access.PrincipalUser)
	}
	id, err := newUUID()
	if err != nil {
		h.internalError(w, "make an assignment ID", err)
		return
	}
	a := store.RoleAssignment{
		Assignment: access.Assignment{ID: id, PrincipalID: req.Assignee, PrincipalType: access.PrincipalType(req.AssigneeType), RoleID: role.ID, Scope: req.Scope},
		CreatedAt:  h.cfg.Now(),
	}
	err = h.cfg.Store.CreateRoleAssignment(r.Context(), a)
	switch {
	case errors.Is(err, store.ErrInvalid):
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	case errors.Is(err, store.ErrConflict):
		apistatus.Write(w, http.StatusConflict, fmt.Sprintf("%s already has role %q at %s", req.Assignee, role.Name, req.Scope))
		return
	case err != nil:
		h.internalError(w, "create the role assignment", err)
		return
	}
	h.logger.Info("role assigned", "principal", req.Assignee, "role", role.ID, "scope", req.Scope)
	writeJSON(w, http.StatusCreated, assignmentView(a))
}

func (h *Hub) listAssignments(w http.ResponseWriter, r *http.Request) {
	f := store.AssignmentFilter{Scope: r.URL.Query().Get("scope"), Below: r.URL.Query().Get("scope") != ""}
	if a := r.URL.Query().Get("assignee"); a != "" {
		f.PrincipalIDs = []string{a}
	}
	as, err := h.cfg.Store.ListRoleAssignments(r.Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		apistatus.Write(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		h.internalError(w, "list role assignments", err)
		return
	}
	// The caller sees the assignments at scopes it may read, and no error
	// for others.
	who := callerOf(r)
	out := make([]AssignmentView, 0, len(as))
	for _, a := range as {
		if who.may(access.ActionAssignmentsRead, a.Scope).Allowed {
			out = append(out, assignmentView(a))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Hub) deleteAssignment(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := h.cfg.Store.DeleteRoleAssignment(r.Context(), id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		writeNoAssignment(w, id)
		return
	case err != nil:
		h.internalError(w, "delete the role assignment", err)
		return
	}
	h.logger.Info("role assignment deleted", "assignment", id)
	w.WriteHeader(http.StatusNoContent)
}

func writeNoAssignment(w http.ResponseWriter, id string) {
	apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("no role assignment %q; list them with: tether role assignment list", id))
}

func assignmentView(a store.RoleAssignment) AssignmentView {
	v := AssignmentView{ID: a.ID, Role: a.RoleID, PrincipalID: a.PrincipalID, PrincipalType: string(a.PrincipalType), Scope: a.Scope, CreatedAt: a.CreatedAt}
	if r, err := access.LookupRole(a.RoleID); err == nil {
		v.RoleName = r.Name
	}
	return v
}

// newUUID returns a random (version 4) UUID in canonical lowercase form.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}
