package console

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

// clusterColumns are the clusters table's sortable columns: the sort
// parameter's value and the cell's class.
var clusterColumns = []struct{ Key, Title string }{
	{"name", "Name"}, {"group", "Group"}, {"location", "Location"}, {"status", "Status"}, {"last-seen", "Last heartbeat"},
	{"agent-version", "Agent"}, {"kubernetes-version", "Kubernetes"}, {"nodes", "Nodes"},
}

// clusterCompare compares two clusters by a column (the sort parameter).
func clusterCompare(key string) func(a, b hub.ClusterView) int {
	switch key {
	case "group":
		return func(a, b hub.ClusterView) int {
			return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Name, b.Name))
		}
	case "location":
		return func(a, b hub.ClusterView) int { return cmp.Compare(a.Location, b.Location) }
	case "status":
		return func(a, b hub.ClusterView) int { return cmp.Compare(a.Status, b.Status) }
	case "last-seen":
		return func(a, b hub.ClusterView) int { return a.LastSeenAt.Compare(b.LastSeenAt) }
	case "agent-version":
		return func(a, b hub.ClusterView) int { return cmp.Compare(a.AgentVersion, b.AgentVersion) }
	case "kubernetes-version":
		return func(a, b hub.ClusterView) int { return cmp.Compare(a.KubernetesVersion, b.KubernetesVersion) }
	case "nodes":
		return func(a, b hub.ClusterView) int { return cmp.Compare(a.NodeCount, b.NodeCount) }
	}
	return func(a, b hub.ClusterView) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Group, b.Group))
	}
}

type sortLink struct {
	Key, Title, URL string
	// Dir is "ascending"/"descending" for the column sorted by, else "".
	Dir string
}

type clustersBody struct {
	Query    string
	Sort     string
	Columns  []sortLink
	Clusters []hub.ClusterView
	// Total counts the clusters before the filter.
	Total int
	// Refresh is the table's refresh period in seconds; PartialURL what
	// it fetches.
	Refresh    int
	PartialURL string
}

func (s *server) clusters(w http.ResponseWriter, c *call) {
	q := c.r.URL.Query()
	var all []hub.ClusterView
	if err := c.api(http.MethodGet, "/api/v1/clusters", nil, &all); err != nil {
		c.failed(w, "Clusters", "clusters", err)
		return
	}
	body := clustersBody{Query: strings.TrimSpace(q.Get("q")), Sort: q.Get("sort"), Total: len(all), Refresh: int(s.cfg.Refresh / time.Second)}
	needle := strings.ToLower(body.Query)
	for _, cl := range all {
		if needle == "" || strings.Contains(strings.ToLower(cl.Name), needle) || strings.Contains(strings.ToLower(cl.Group), needle) || strings.Contains(strings.ToLower(cl.Location), needle) {
			body.Clusters = append(body.Clusters, cl)
		}
	}
	key, desc := strings.CutPrefix(body.Sort, "-")
	if !slices.ContainsFunc(clusterColumns, func(col struct{ Key, Title string }) bool { return col.Key == key }) {
		key, desc, body.Sort = "name", false, ""
	}
	compare := clusterCompare(key)
	slices.SortStableFunc(body.Clusters, func(a, b hub.ClusterView) int {
		if desc {
			return compare(b, a)
		}
		return compare(a, b)
	})
	for _, col := range clusterColumns {
		l := sortLink{Key: col.Key, Title: col.Title}
		next := col.Key
		if col.Key == key {
			l.Dir = "ascending"
			if desc {
				l.Dir = "descending"
			} else {
				next = "-" + col.Key
			}
		}
		v := url.Values{"sort": {next}}
		if body.Query != "" {
			v.Set("q", body.Query)
		}
		l.URL = Path + "/clusters?" + v.Encode()
		body.Columns = append(body.Columns, l)
	}
	pv := url.Values{"partial": {"1"}}
	if body.Query != "" {
		pv.Set("q", body.Query)
	}
	if body.Sort != "" {
		pv.Set("sort", body.Sort)
	}
	body.PartialURL = Path + "/clusters?" + pv.Encode()
	if q.Get("partial") != "" {
		s.renderTemplate(w, http.StatusOK, "clusters", "clusters-table", body)
		return
	}
	c.render(w, http.StatusOK, "clusters", pageData{Title: "Clusters", Active: "clusters", Body: body})
}

type clusterBody struct {
	Cluster     hub.ClusterView
	Assignments []hub.AssignmentView
	// AssignmentsError, AuditError: why that part cannot be shown.
	AssignmentsError string
	Events           []audit.Event
	AuditError       string
	AuditSince       time.Time
}

// recentWindow is how far back the cluster page's audit events go.
const recentWindow = 24 * time.Hour

func (s *server) cluster(w http.ResponseWriter, c *call) {
	group, name := c.r.PathValue("group"), c.r.PathValue("name")
	var body clusterBody
	if err := c.api(http.MethodGet, "/api/v1/groups/"+url.PathEscape(group)+"/clusters/"+url.PathEscape(name), nil, &body.Cluster); err != nil {
		c.failed(w, "Cluster "+group+"/"+name, "clusters", err)
		return
	}
	id := body.Cluster.ID
	var all []hub.AssignmentView
	if err := c.api(http.MethodGet, "/api/v1/role-assignments", nil, &all); err != nil {
		body.AssignmentsError = errorText(err)
	}
	for _, a := range all {
		// Those at the cluster, below it (namespaces), and above it
		// (its group, the root), which it inherits.
		if a.Scope == "/" || a.Scope == id || strings.HasPrefix(a.Scope, id+"/") || strings.HasPrefix(id, a.Scope+"/") {
			body.Assignments = append(body.Assignments, a)
		}
	}
	body.AuditSince = s.cfg.Now().Add(-recentWindow)
	events, err := c.recentAudit(url.Values{"cluster": {id}, "since": {body.AuditSince.UTC().Format(time.RFC3339)}}, 50, 5)
	var ae *apiError
	switch {
	case errors.As(err, &ae) && ae.Code == http.StatusForbidden:
		body.AuditError = "Your roles do not let you read the audit trail (it needs the audit/read action: Reader, Contributor or Owner at the root)."
	case err != nil:
		body.AuditError = errorText(err)
	}
	body.Events = events
	c.render(w, http.StatusOK, "cluster", pageData{Title: "Cluster " + group + "/" + name, Active: "clusters", Body: body})
}

// recentAudit reads the audit trail that q selects, page after page (at
// most pages pages of store.MaxAuditLimit events), and returns the last
// keep events of the chain (all when keep is 0), newest first.
func (c *call) recentAudit(q url.Values, keep, pages int) ([]audit.Event, error) {
	var events []audit.Event
	q.Set("limit", fmt.Sprint(store.MaxAuditLimit))
	for range pages {
		var page hub.AuditPage
		if err := c.api(http.MethodGet, hub.AuditPath+"?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		events = append(events, page.Events...)
		if keep > 0 && len(events) > keep {
			events = events[len(events)-keep:]
		}
		if page.Next == 0 {
			break
		}
		q.Set("after", fmt.Sprint(page.Next))
	}
	// Newest first: by time (replicas append in about, not exactly, time
	// order), then by place in the chain.
	slices.SortFunc(events, func(a, b audit.Event) int { return cmp.Or(b.Time.Compare(a.Time), cmp.Compare(b.Seq, a.Seq)) })
	return events, nil
}
