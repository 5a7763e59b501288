package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// StatusPath is where an agent reports its status to the hub (POST, JSON
// StatusReport), authenticated with its key exactly as the tunnel upgrade
// is.
const StatusPath = "/api/v1/agent/status"

// StatusReport is what an agent tells the hub about its cluster, at start,
// periodically and whenever it changes; `tether cluster show` reports it.
type StatusReport struct {
	AgentVersion      string `json:"agentVersion"`
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// NodeCount is the number of Node objects; -1 when unknown (the API
	// server could not be asked).
	NodeCount int `json:"nodeCount"`
	// LastError is the agent's most recent problem (API server unreachable,
	// permissions missing), empty when all is well. At most 1 KiB.
	LastError string `json:"lastError,omitempty"`
}

// maxLastError bounds StatusReport.LastError.
const maxLastError = 1 << 10

// kubeClients are the agent's own clients for its checks and its state
// Secret, with the agent's credentials; the proxy has its own transports.
type kubeClients struct {
	http   *http.Client
	client kubernetes.Interface
	meta   metadata.Interface
}

func newKubeClients(cfg *rest.Config, agentVersion string) (*kubeClients, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "tether-agent/" + agentVersion
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("client for the API server: %w", err)
	}
	client, err := kubernetes.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("client for the API server: %w", err)
	}
	meta, err := metadata.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, fmt.Errorf("client for the API server: %w", err)
	}
	return &kubeClients{http: hc, client: client, meta: meta}, nil
}

func (k *kubeClients) closeIdle() { utilnet.CloseIdleConnectionsFor(k.http.Transport) }

// serverVersion asks the API server for its version: the probe behind
// /readyz.
func (k *kubeClients) serverVersion(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	body, err := k.client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Raw()
	if err != nil {
		return "", fmt.Errorf("API server unreachable: %w", err)
	}
	var v version.Info
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("API server /version: %w", err)
	}
	return v.GitVersion, nil
}

// countNodes lists the nodes' metadata: one item per page, since the first
// page says how many remain; pages of 500 when it does not.
func (k *kubeClients) countNodes(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nodes := k.meta.Resource(corev1.SchemeGroupVersion.WithResource("nodes"))
	opts := metav1.ListOptions{Limit: 1}
	n := 0
	for {
		list, err := nodes.List(ctx, opts)
		if err != nil {
			return -1, fmt.Errorf("count nodes (the agent needs list on nodes): %w", err)
		}
		n += len(list.Items)
		switch {
		case list.Continue == "":
			return n, nil
		case list.RemainingItemCount != nil:
			return n + int(*list.RemainingItemCount), nil
		}
		opts = metav1.ListOptions{Limit: 500, Continue: list.Continue}
	}
}

// checks are the monitor's results that outlive one round; only the
// monitor goroutine uses them.
type checks struct {
	nodes     int   // -1 when unknown
	permErr   error // from CheckPermissions
	nodesErr  error
	stale     bool   // permErr and nodes need a new check
	lastError string // as last computed
	// sendErr is the last report's failure ("" after a success), logged
	// when it changes; the hub's 404 (no status endpoint yet) is logged
	// once, at debug.
	sendErr string
}

// monitor probes the API server every CheckInterval and, once the agent is
// enrolled, reports its status to the hub every StatusInterval, when woken
// (enrolled, tunnel connected, mode changed) and as soon as LastError
// changes. It returns when ctx ends.
func (a *Agent) monitor(ctx context.Context) {
	probes := time.NewTicker(a.cfg.CheckInterval)
	defer probes.Stop()
	reports := time.NewTicker(a.cfg.StatusInterval)
	defer reports.Stop()
	c := checks{nodes: -1, stale: true}
	due := true
	for {
		a.vitals.set(func(v *vitalSigns) { v.beat = time.Now() })
		apiErr := a.probe(ctx)
		switch {
		case apiErr != nil:
			c.nodes, c.permErr, c.nodesErr, c.stale = -1, nil, nil, true
		case c.stale:
			c.permErr = a.checkPermissions(ctx)
			c.nodes, c.nodesErr = a.kube.countNodes(ctx)
			// A failed check is made again next round: the failure may
			// have been the API server going away between the probe and
			// the check, and would otherwise stand until the next report
			// is due, after the API server came back.
			c.stale = c.permErr != nil || c.nodesErr != nil
		}
		if ctx.Err() != nil {
			return
		}
		v := a.vitals.get()
		if last := lastError(apiErr, v.dialErr, c.permErr, c.nodesErr); last != c.lastError {
			if last != "" {
				a.logger.Warn("agent problem", "err", last)
			} else {
				a.logger.Info("agent problems resolved")
			}
			c.lastError, due = last, true
		}
		if due && v.en != nil {
			a.report(ctx, v.en, &c, StatusReport{AgentVersion: a.cfg.Version, KubernetesVersion: v.version, NodeCount: c.nodes, LastError: c.lastError})
		}
		due = false
		select {
		case <-ctx.Done():
			return
		case <-probes.C:
		case <-reports.C:
			c.stale, due = true, true
		case <-a.wake:
			c.stale, due = true, true
		}
	}
}

// probe asks the API server for its version and records the result.
func (a *Agent) probe(ctx context.Context) error {
	gitVersion, err := a.kube.serverVersion(ctx)
	a.metrics.apiserverReachable.Set(boolGauge(err == nil))
	a.vitals.set(func(v *vitalSigns) {
		v.apiErr = err
		if err == nil {
			v.apiOK, v.version = time.Now(), gitVersion
		}
	})
	return err
}

// checkPermissions runs CheckPermissions for the cluster's current mode.
func (a *Agent) checkPermissions(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return CheckPermissions(ctx, a.kube.client, a.vitals.get().hubRBAC)
}

// lastError joins the current problems, most severe first, within
// maxLastError bytes.
func lastError(errs ...error) string {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	return clip(strings.Join(msgs, "; "), maxLastError)
}

// clip cuts s to at most n bytes without splitting a UTF-8 sequence.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const more = "..."
	s = s[:n-len(more)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + more
}

// report sends one StatusReport, proved like the tunnel upgrade, and logs a
// failure only when it differs from the last one.
func (a *Agent) report(ctx context.Context, en *enrollment, c *checks, rep StatusReport) {
	body, _ := json.Marshal(rep) // strings and an int: cannot fail
	proof, err := en.proof()
	if err == nil {
		_, _, err = a.post(ctx, en.client, en.endpoint("https", StatusPath), proof, body)
	}
	if ctx.Err() != nil {
		return
	}
	var he *hubError
	var pe *pinError
	switch {
	case err == nil:
		a.metrics.statusReports.WithLabelValues(reportOK).Inc()
		a.metrics.lastStatusReport.SetToCurrentTime()
		if c.sendErr != "" {
			a.logger.Info("status reports reach the hub again", "cluster", en.cluster)
		}
		c.sendErr = ""
	case errors.As(err, &he) && he.code == http.StatusNotFound:
		a.metrics.statusReports.WithLabelValues(reportUnsupported).Inc()
		if c.sendErr != "unsupported" {
			a.logger.Debug("the hub has no status endpoint yet; reports continue quietly", "hub", en.base.Host, "err", err)
		}
		c.sendErr = "unsupported"
	case errors.As(err, &pe):
		// Logged every time, as a tunnel dial's is.
		a.metrics.statusReports.WithLabelValues(reportFailed).Inc()
		a.logger.Error("status report refused: the hub's TLS keys are not those pinned at enrollment", "cluster", en.cluster, "hub", en.base.Host, "err", pe)
		c.sendErr = pe.Error()
	default:
		a.metrics.statusReports.WithLabelValues(reportFailed).Inc()
		if msg := err.Error(); msg != c.sendErr {
			a.logger.Warn("status report failed", "cluster", en.cluster, "hub", en.base.Host, "err", err)
			c.sendErr = msg
		}
	}
}
