package console

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

type assignmentsBody struct {
	Assignments []hub.AssignmentView
	Roles       []hub.RoleView
	// Form is what the create form shows (kept after a refusal).
	Form assignmentForm
}

type assignmentForm struct {
	Assignee, AssigneeType, Role, Scope string
}

// assigneeTypes are the create form's principal types: the API's value
// and the directory path that finds one by name.
var assigneeTypes = map[string]string{"user": "users", "group": "groups", "servicePrincipal": "service-principals"}

func (s *server) assignments(w http.ResponseWriter, c *call) {
	data := pageData{Title: "Role assignments", Active: "assignments"}
	q := c.r.URL.Query()
	if id := q.Get("created"); store.ValidateUUID(id) == nil {
		data.Flash = "Created role assignment " + id + "."
	}
	if id := q.Get("deleted"); store.ValidateUUID(id) == nil {
		data.Flash = "Deleted role assignment " + id + "."
	}
	c.assignmentsPage(w, http.StatusOK, data, assignmentForm{AssigneeType: "user"})
}

// assignmentsPage shows the assignments and the create form.
func (c *call) assignmentsPage(w http.ResponseWriter, status int, data pageData, form assignmentForm) {
	body := assignmentsBody{Form: form}
	if err := c.api(http.MethodGet, "/api/v1/role-assignments", nil, &body.Assignments); err != nil {
		c.failed(w, "Role assignments", "assignments", err)
		return
	}
	if err := c.api(http.MethodGet, "/api/v1/role-definitions", nil, &body.Roles); err != nil {
		c.failed(w, "Role assignments", "assignments", err)
		return
	}
	data.Body = body
	c.render(w, status, "assignments", data)
}

// createAssignment creates a role assignment through the API, as the
// signed-in person. The assignee may be an object ID, or a name the
// directory API resolves (a login name, a group's display name, a
// service principal's client ID) when the person may read the directory.
func (s *server) createAssignment(w http.ResponseWriter, c *call) {
	f := c.r.PostForm
	form := assignmentForm{Assignee: strings.TrimSpace(f.Get("assignee")), AssigneeType: f.Get("assigneeType"), Role: f.Get("role"), Scope: strings.TrimSpace(f.Get("scope"))}
	if form.AssigneeType == "" {
		form.AssigneeType = "user"
	}
	refuse := func(status int, msg string) {
		c.assignmentsPage(w, status, pageData{Title: "Role assignments", Active: "assignments", Error: msg}, form)
	}
	dir, ok := assigneeTypes[form.AssigneeType]
	switch {
	case !ok:
		refuse(http.StatusBadRequest, fmt.Sprintf("Unknown assignee type %q: choose user, group or service principal.", form.AssigneeType))
		return
	case form.Assignee == "":
		refuse(http.StatusBadRequest, "Name the assignee: an object ID, or a user's login name.")
		return
	}
	id := form.Assignee
	if store.ValidateUUID(id) != nil {
		var p hub.PrincipalView
		if err := c.api(http.MethodGet, "/api/v1/"+dir+"/"+url.PathEscape(id), nil, &p); err != nil {
			if ae, ok := err.(*apiError); ok && ae.Code == http.StatusUnauthorized {
				c.failed(w, "Role assignments", "assignments", err)
				return
			}
			refuse(statusOf(err), fmt.Sprintf("The assignee %q could not be looked up (%s). Give the principal's object ID instead.", id, errorText(err)))
			return
		}
		id = p.ID
	}
	var created hub.AssignmentView
	err := c.api(http.MethodPost, "/api/v1/role-assignments", hub.AssignmentRequest{Role: form.Role, Assignee: id, AssigneeType: form.AssigneeType, Scope: form.Scope}, &created)
	if err != nil {
		if ae, ok := err.(*apiError); ok && ae.Code == http.StatusUnauthorized {
			c.failed(w, "Role assignments", "assignments", err)
			return
		}
		refuse(statusOf(err), errorText(err))
		return
	}
	http.Redirect(w, c.r, Path+"/assignments?created="+url.QueryEscape(created.ID), http.StatusSeeOther)
}

// deleteAssignment deletes a role assignment through the API.
func (s *server) deleteAssignment(w http.ResponseWriter, c *call) {
	id := c.r.PathValue("id")
	if err := c.api(http.MethodDelete, "/api/v1/role-assignments/"+url.PathEscape(id), nil, nil); err != nil {
		if ae, ok := err.(*apiError); ok && ae.Code == http.StatusUnauthorized {
			c.failed(w, "Role assignments", "assignments", err)
			return
		}
		c.assignmentsPage(w, statusOf(err), pageData{Title: "Role assignments", Active: "assignments", Error: errorText(err)}, assignmentForm{AssigneeType: "user"})
		return
	}
	http.Redirect(w, c.r, Path+"/assignments?deleted="+url.QueryEscape(id), http.StatusSeeOther)
}

// statusOf is the status to answer a page with for err.
func statusOf(err error) int {
	if ae, ok := err.(*apiError); ok {
		return ae.Code
	}
	return http.StatusBadGateway
}
