package console

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"tether.dev/tether/internal/hub"
)

type connectForm struct {
	Group, Name, Location, Mode string
}

type connectBody struct {
	Form      connectForm
	Locations []hub.LocationView
	// Set once a join token was minted.
	Cluster   *hub.ClusterView
	Reused    bool
	ExpiresAt time.Time
	Commands  string
}

func (s *server) connectForm(w http.ResponseWriter, c *call) {
	c.connectPage(w, http.StatusOK, pageData{}, connectBody{Form: connectForm{Mode: "kubernetes-rbac"}})
}

func (c *call) connectPage(w http.ResponseWriter, status int, data pageData, body connectBody) {
	if err := c.api(http.MethodGet, "/api/v1/locations", nil, &body.Locations); err != nil {
		c.failed(w, "Connect a cluster", "connect", err)
		return
	}
	data.Title, data.Active, data.Body = "Connect a cluster", "connect", body
	c.render(w, status, "connect", data)
}

// connect registers the cluster, or reuses a registered one, and mints a
// join token for it, then shows the commands that install the agent with
// it. The token is only in this answer (a POST's), never in a URL.
func (s *server) connect(w http.ResponseWriter, c *call) {
	f := c.r.PostForm
	body := connectBody{Form: connectForm{Group: strings.TrimSpace(f.Get("group")), Name: strings.TrimSpace(f.Get("name")),
		Location: f.Get("location"), Mode: f.Get("mode")}}
	refuse := func(err error) {
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == http.StatusUnauthorized {
			c.failed(w, "Connect a cluster", "connect", err)
			return
		}
		c.connectPage(w, statusOf(err), pageData{Error: errorText(err)}, body)
	}
	var created hub.CreatedCluster
	err := c.api(http.MethodPost, "/api/v1/clusters", hub.ClusterRequest{Group: body.Form.Group, Name: body.Form.Name, Location: body.Form.Location, Mode: body.Form.Mode}, &created)
	var ae *apiError
	var join hub.JoinTokenView
	switch {
	case err == nil:
		body.Cluster, join = &created.Cluster, created.Join
	case errors.As(err, &ae) && ae.Code == http.StatusConflict:
		// Registered already: a new join token for it, if its mode is
		// the one asked for.
		path := "/api/v1/groups/" + url.PathEscape(body.Form.Group) + "/clusters/" + url.PathEscape(body.Form.Name)
		var view hub.ClusterView
		if err := c.api(http.MethodGet, path, nil, &view); err != nil {
			refuse(err)
			return
		}
		if body.Form.Mode != "" && view.Mode != body.Form.Mode {
			refuse(&apiError{Code: http.StatusConflict, Message: fmt.Sprintf("Cluster %s is registered in %s mode, not %s; connect it in %s mode, or delete it first (tether cluster delete -g %s -n %s).",
				view.ID, view.Mode, body.Form.Mode, view.Mode, view.Group, view.Name)})
			return
		}
		if err := c.api(http.MethodPost, path+"/join-tokens", nil, &join); err != nil {
			refuse(err)
			return
		}
		body.Cluster, body.Reused = &view, true
	default:
		refuse(err)
		return
	}
	body.ExpiresAt = join.ExpiresAt
	body.Commands = agentCommands(s.cfg.HubURL, *body.Cluster, join.JoinToken)
	c.connectPage(w, http.StatusOK, pageData{}, body)
}

// agentCommands are the commands that install the agent of cluster with
// token: the Helm chart, or tether agent as a process (docs/agent.md,
// deploy/helm/tether-agent).
func agentCommands(hubURL string, cl hub.ClusterView, token string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# With the Helm chart, in the cluster (kubectl pointing at it):\n")
	fmt.Fprintf(&b, "kubectl create namespace tether-system\n")
	fmt.Fprintf(&b, "kubectl -n tether-system create secret generic tether-join-token --from-literal=token=%s\n", token)
	fmt.Fprintf(&b, "helm install tether-agent deploy/helm/tether-agent -n tether-system \\\n")
	fmt.Fprintf(&b, "  --set hub.url=%s \\\n", hubURL)
	fmt.Fprintf(&b, "  --set-file hub.ca=hub-ca.crt \\\n")
	fmt.Fprintf(&b, "  --set joinToken.existingSecret=tether-join-token \\\n")
	fmt.Fprintf(&b, "  --set mode=%s \\\n", cl.Mode)
	fmt.Fprintf(&b, "  --set clusterID=%s\n", cl.ID)
	fmt.Fprintf(&b, "\n# Or as a process next to a kubeconfig of the cluster:\n")
	fmt.Fprintf(&b, "tether agent --hub %s --hub-ca hub-ca.crt --kubeconfig agent.kubeconfig --state-dir /var/lib/tether-agent --join-token %s\n", hubURL, token)
	return b.String()
}
