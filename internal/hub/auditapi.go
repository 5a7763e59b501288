package hub

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// AuditPath serves the audit trail: GET with the query parameters of
// AuditQuery, answered with an AuditPage. Reading it needs the audit/read
// action at the root (Reader, Contributor, Owner).
const AuditPath = "/api/v1/audit"

// AuditPage is one page of the audit trail, in chain order.
type AuditPage struct {
	Events []audit.Event `json:"events"`
	// Next, when set, is the "after" value that fetches the next page.
	Next int64 `json:"next,omitempty"`
}

func (h *Hub) auditRoutes(mux *http.ServeMux) {
	root := func(http.ResponseWriter, *http.Request) (string, bool) { return "/", true }
	mux.HandleFunc("GET "+AuditPath, h.authorize(access.ActionAuditRead, root, h.listAudit))
}

// listAudit answers a page of events: after=SEQ, since and until
// (RFC 3339), cluster (an ID or GROUP/NAME), principal, verb, decision,
// type, limit.
func (h *Hub) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f store.AuditFilter
	var err error
	bad := func(what string, err error) {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("audit query: %s: %v", what, err))
	}
	if s := q.Get("after"); s != "" {
		if f.AfterSeq, err = strconv.ParseInt(s, 10, 64); err != nil || f.AfterSeq < 0 {
			bad("after", fmt.Errorf("want an event's sequence number, got %q", s))
			return
		}
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if s := q.Get(t.name); s != "" {
			if *t.to, err = time.Parse(time.RFC3339Nano, s); err != nil {
				bad(t.name, fmt.Errorf("want an RFC 3339 time such as 2026-11-27T10:00:00Z, got %q", s))
				return
			}
		}
	}
	f.Cluster = q.Get("cluster")
	if group, name, ok := strings.Cut(f.Cluster, "/"); ok && !strings.HasPrefix(f.Cluster, "/") {
		f.Cluster = store.ClusterID(group, name)
	}
	f.PrincipalID, f.Verb, f.Decision, f.Type = q.Get("principal"), q.Get("verb"), q.Get("decision"), q.Get("type")
	if s := q.Get("limit"); s != "" {
		if f.Limit, err = strconv.Atoi(s); err != nil || f.Limit < 1 || f.Limit > store.MaxAuditLimit {
			bad("limit", fmt.Errorf("want 1 to %d, got %q", store.MaxAuditLimit, s))
			return
		}
	}
	limit := f.Limit
	if limit == 0 {
		limit = store.DefaultAuditLimit
	}
	events, err := h.cfg.Store.ListAudit(r.Context(), f)
	if errors.Is(err, store.ErrInvalid) {
		bad("filter", err)
		return
	}
	if err != nil {
		h.internalError(w, "read the audit trail", err)
		return
	}
	page := AuditPage{Events: events}
	if page.Events == nil {
		page.Events = []audit.Event{}
	}
	if len(events) == limit {
		page.Next = events[len(events)-1].Seq
	}
	writeJSON(w, http.StatusOK, page)
}

// recordChange records an admin API request that changes something, when
// it is done: who (c, nil when authentication failed), what, the outcome.
func (h *Hub) recordChange(r *http.Request, aw *auditWriter, c *caller, start time.Time) {
	e := audit.Event{Time: start, Type: audit.TypeChange, RequestID: aw.Header().Get("X-Request-Id"), Replica: h.cfg.Replica,
		SourceAddr: r.RemoteAddr, Verb: changeVerb(r.Method), Path: r.URL.Path, Status: aw.status,
		Duration: h.cfg.Now().Sub(start), BytesOut: aw.written}
	if g, n := r.PathValue("group"), r.PathValue("name"); g != "" && n != "" && strings.Contains(r.URL.Path, "/clusters/") {
		e.Cluster = store.ClusterID(g, n)
	}
	switch {
	case c == nil:
	case c.admin:
		e.PrincipalType, e.PrincipalName = "admin", "the hub's bootstrap admin token"
		e.Reason = "the bootstrap admin token may do everything"
	default:
		p := accessPrincipal(c.principal)
		e.PrincipalID, e.PrincipalType, e.PrincipalName = p.ID, string(p.Type), c.principal.Name
		e.Reason = c.grant
	}
	switch {
	case aw.status == http.StatusUnauthorized || aw.status == http.StatusForbidden:
		e.Decision, e.Reason = audit.DecisionDeny, statusText(aw.errBody, "")
	case aw.status >= 500 || aw.status == 0:
		e.Decision, e.Reason = audit.DecisionError, statusText(aw.errBody, "")
	default:
		e.Decision = audit.DecisionAllow
		if aw.status >= 400 {
			e.Reason = statusText(aw.errBody, e.Reason)
		}
	}
	h.audit.record(clean(e))
}

// changeVerb names what an admin API method does.
func changeVerb(method string) string {
	switch method {
	case http.MethodPost:
		return "create"
	case http.MethodPut, http.MethodPatch:
		return "update"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

// recordEnroll records an enrollment attempt.
func (h *Hub) recordEnroll(r *http.Request, start time.Time, cluster string, status int, reason string) {
	e := audit.Event{Time: start, Type: audit.TypeEnroll, RequestID: newRequestID(), Replica: h.cfg.Replica,
		SourceAddr: r.RemoteAddr, Cluster: cluster, PrincipalType: "agent", PrincipalID: cluster, Verb: "create", Resource: "enrollment",
		Status: status, Reason: reason, Duration: h.cfg.Now().Sub(start), Decision: audit.DecisionAllow}
	switch {
	case status >= 500:
		e.Decision = audit.DecisionError
	case status >= 400:
		e.Decision = audit.DecisionDeny
	}
	h.audit.record(clean(e))
}

// RecordAudit records an event from a part of the hub outside this package
// (the embedded issuer's sign-ins): it names this replica, gives the event
// a request ID if it has none, and fits it to the store.
func (h *Hub) RecordAudit(e audit.Event) {
	e.Replica = h.cfg.Replica
	if e.RequestID == "" {
		e.RequestID = newRequestID()
	}
	h.audit.record(clean(e))
}
