package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

// holdingAPIServer is a stand-in for kube-apiserver whose watches stay
// open until release is closed; other requests get an empty list.
func holdingAPIServer(t *testing.T, release <-chan struct{}) *apiServer {
	a := &apiServer{}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") == "1" {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// histogramCount is the number of observations of the histogram series
// of name with labels in reg; -1 if there is no such series.
func histogramCount(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if cmp.Equal(labels, got) {
				return int(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}

// logLines parses the hub's JSON log lines.
func logLines(t *testing.T, b *syncBuffer) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		lines = append(lines, m)
	}
	return lines
}

// findLog returns the first log line with msg whose request_id is id.
func findLog(t *testing.T, b *syncBuffer, msg, id string) map[string]any {
	t.Helper()
	for _, l := range logLines(t, b) {
		if l["msg"] == msg && l["request_id"] == id {
			return l
		}
	}
	return nil
}

// TestMetricsAndRequestLog runs a real agent's tunnel through an
// in-process hub and checks that the counters move with the requests, that
// each request's log line carries the request ID the client was given and
// the audit trail recorded, and that no series names the caller.
func TestMetricsAndRequestLog(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The hub pings its tunnels every 20 ms: the RTT histogram fills.
	f := newFixtureLogged(t, func(c *Config) { c.Tunnel.KeepAliveInterval = 20 * time.Millisecond }, logger)
	m := f.hub.metrics
	// The fixture does not write the audit trail; Serve would.
	auditing, stopAudit := context.WithCancel(context.Background())
	var audited sync.WaitGroup
	audited.Go(func() { f.hub.audit.run(auditing, time.Second) })
	defer func() {
		stopAudit()
		audited.Wait()
	}()
	release := make(chan struct{})
	api := holdingAPIServer(t, release)
	c := f.createCluster(t, "prod", "edge-1")
	agent := startAgent(t, f, api, c.Join.JoinToken, t.TempDir())
	defer agent.stop()
	waitConnected(t, f, c.Cluster.ID)
	if got := testutil.ToFloat64(m.agentSessions); got != 1 {
		t.Errorf("tether_hub_agent_sessions = %v; want 1", got)
	}
	if got := testutil.ToFloat64(m.agentConnects); got != 1 {
		t.Errorf("tether_hub_agent_connects_total = %v; want 1", got)
	}

	// A service-account token: the hub passes it on ("token" mode). Its
	// subject must appear in no series.
	sa := "eyJhbGciOiJSUzI1NiJ9." + b64url(`{"sub":"system:serviceaccount:default:robot"}`) + ".c2ln"
	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", f.srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, resp.Header.Get("X-Request-Id")
	}
	resp, listID := get("/k8s/prod/edge-1/api/v1/namespaces/web/pods", sa)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || listID == "" {
		t.Fatalf("list: %d, request ID %q", resp.StatusCode, listID)
	}
	resp, deniedID := get("/k8s/prod/edge-1/api/v1/pods", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: %d; want 401", resp.StatusCode)
	}

	// A watch is in flight until the API server lets it go.
	watch, _ := get("/k8s/prod/edge-1/api/v1/pods?watch=1", sa)
	if got := testutil.ToFloat64(m.timing.LongRunning.WithLabelValues(access.KindWatch)); got != 1 {
		t.Errorf("watches in flight = %v; want 1", got)
	}
	close(release)
	io.Copy(io.Discard, watch.Body)
	watch.Body.Close()
	poll(t, "the watch is counted out", func() bool { return testutil.ToFloat64(m.timing.LongRunning.WithLabelValues(access.KindWatch)) == 0 })

	poll(t, "the requests are counted", func() bool {
		return testutil.ToFloat64(m.requests.WithLabelValues("watch", "200")) == 1
	})
	for _, tt := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"list 200", m.requests.WithLabelValues("list", "200"), 1},
		{"list 401", m.requests.WithLabelValues("list", "401"), 1},
		{"token allowed", m.authz.WithLabelValues(authzModeToken, decisionAllow), 2},
		{"kubernetes-rbac allowed", m.authz.WithLabelValues("kubernetes-rbac", decisionAllow), 0},
	} {
		if got := testutil.ToFloat64(tt.c); got != tt.want {
			t.Errorf("%s: %v; want %v", tt.name, got, tt.want)
		}
	}
	if got := histogramCount(t, m.registry, "tether_hub_request_duration_seconds", map[string]string{"verb": "list"}); got != 2 {
		t.Errorf("list durations observed: %d; want 2 (the 200 and the 401)", got)
	}
	if got := histogramCount(t, m.registry, "tether_hub_request_duration_seconds", map[string]string{"verb": "watch"}); got != -1 {
		t.Errorf("watch durations observed: %d; want no series (a watch is long-running)", got)
	}
	if testutil.ToFloat64(m.tunnelSent) == 0 || testutil.ToFloat64(m.tunnelReceived) == 0 {
		t.Errorf("tunnel bytes sent %v, received %v; want both counted", testutil.ToFloat64(m.tunnelSent), testutil.ToFloat64(m.tunnelReceived))
	}
	if got := histogramCount(t, m.registry, "tether_hub_store_query_duration_seconds", map[string]string{"operation": "GetCluster"}); got < 1 {
		t.Errorf("GetCluster store calls timed: %d; want some", got)
	}
	poll(t, "a tunnel ping is timed", func() bool {
		return histogramCount(t, m.registry, "tether_hub_tunnel_rtt_seconds", map[string]string{}) > 0
	})

	// The log lines and the audit trail name the requests alike.
	poll(t, "the list is logged and audited", func() bool { return findLog(t, logs, "request", listID) != nil })
	line := findLog(t, logs, "request", listID)
	for k, want := range map[string]any{"level": "DEBUG", "cluster": c.Cluster.ID, "verb": "list", "resource": "pods", "namespace": "web",
		"code": float64(200), "decision": "allow", "principal_type": "kubernetesToken"} {
		if line[k] != want {
			t.Errorf("log line %s = %v; want %v\n%v", k, line[k], want, line)
		}
	}
	if denied := findLog(t, logs, "request", deniedID); denied == nil || denied["level"] != "INFO" || denied["code"] != float64(401) {
		t.Errorf("the refused request's log line: %v; want one at INFO with code 401", denied)
	}
	if strings.Contains(logs.String(), sa) {
		t.Error("the log holds the caller's token")
	}
	poll(t, "the audit events are written", func() bool {
		events, err := f.hub.cfg.Store.ListAudit(context.Background(), store.AuditFilter{})
		if err != nil {
			return false
		}
		found := 0
		for _, e := range events {
			if e.RequestID == listID || e.RequestID == deniedID {
				found++
			}
		}
		return found == 2
	})

	// Refused and ended tunnels, by reason.
	resp, _ = get(tunnelPath, "")
	resp.Body.Close()
	if got := testutil.ToFloat64(m.agentRefusals.WithLabelValues(refusedMalformed)); got != 1 {
		t.Errorf("refusals for a missing proof = %v; want 1", got)
	}
	agent.stop()
	poll(t, "the tunnel is counted out", func() bool { return testutil.ToFloat64(m.agentSessions) == 0 })
	if got := testutil.ToFloat64(m.agentDisconnects.WithLabelValues(disconnectClosed)); got != 1 {
		t.Errorf("disconnects closed by the agent = %v; want 1", got)
	}

	// The scrape: no label holds the caller, the cluster or the token.
	rec := httptest.NewRecorder()
	f.hub.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `tether_hub_requests_total{code="200",verb="list"} 1`) || !strings.Contains(body, "tether_hub_build_info{") {
		t.Errorf("the scrape lacks the request counter or the build info:\n%.2000s", body)
	}
	for _, leak := range []string{"robot", "serviceaccount", "edge-1", "prod"} {
		if strings.Contains(body, leak) {
			t.Errorf("the scrape names %q", leak)
		}
	}
}

// TestDisconnectReasons ends tunnels the ways the hub can tell apart.
func TestDisconnectReasons(t *testing.T) {
	f := newFixture(t)
	m := f.hub.metrics
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	agent := startAgent(t, f, api, c.Join.JoinToken, t.TempDir())
	defer agent.stop() // refused for good, in the end
	waitConnected(t, f, c.Cluster.ID)
	// Deleting the cluster revokes its agent's key and closes the tunnel.
	if code, body := f.call(t, "DELETE", "/api/v1/groups/prod/clusters/edge-1", adminToken, nil); code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", code, body)
	}
	poll(t, "the revoked tunnel is counted out", func() bool {
		return testutil.ToFloat64(m.agentDisconnects.WithLabelValues(disconnectRevoked)) == 1
	})
	// The agent comes back and is refused: its cluster is gone.
	poll(t, "the agent is refused", func() bool {
		return testutil.ToFloat64(m.agentRefusals.WithLabelValues(refusedUnknown)) >= 1
	})
	if got := testutil.ToFloat64(m.authz.WithLabelValues(authzModeAdmin, decisionAllow)); got != 2 {
		t.Errorf("admin API decisions allowed = %v; want 2 (the cluster's creation and deletion)", got)
	}
}

// TestProbesAndMetricsListeners serves a real hub with its probe and
// metrics listeners and checks the probes' answers, draining included.
func TestProbesAndMetricsListeners(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	probes, metrics, main := listen(), listen(), listen()
	cert := selfSigned(t)
	h, err := New(Config{Store: st, AdminTokenHash: HashToken(adminToken), HubID: "test-hub", AssertionKey: key, Replica: "test", Version: "v9.9.9",
		ProbeListener: probes, MetricsListener: metrics}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var serving sync.WaitGroup
	serving.Go(func() {
		if err := h.Serve(ctx, main, &tls.Config{Certificates: []tls.Certificate{cert}}); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	defer func() {
		cancel()
		serving.Wait()
	}()
	get := func(l net.Listener, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + l.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	poll(t, "the hub is ready", func() bool { code, _ := get(probes, "/readyz"); return code == http.StatusOK })

	tests := []struct {
		name     string
		l        net.Listener
		path     string
		draining bool
		wantCode int
		want     []string
	}{
		{name: "readyz", l: probes, path: "/readyz", wantCode: 200, want: []string{"ok"}},
		{name: "readyz verbose", l: probes, path: "/readyz?verbose", wantCode: 200,
			want: []string{"[+]shutdown ok\n", "[+]serving ok\n", "[+]routes ok\n", "[+]store ok\n", "readyz check passed\n"}},
		{name: "one check", l: probes, path: "/readyz/store", wantCode: 200, want: []string{"ok"}},
		{name: "livez verbose", l: probes, path: "/livez?verbose", wantCode: 200, want: []string{"[+]ping ok\n", "livez check passed\n"}},
		{name: "draining", l: probes, path: "/readyz?verbose", draining: true, wantCode: 503,
			want: []string{"[-]shutdown failed: this replica is draining", "[+]store ok\n", "readyz check failed\n"}},
		{name: "draining, one check", l: probes, path: "/readyz/shutdown", draining: true, wantCode: 503, want: []string{"[-]shutdown failed"}},
		{name: "draining: still alive", l: probes, path: "/livez", draining: true, wantCode: 200, want: []string{"ok"}},
		{name: "metrics", l: metrics, path: "/metrics", wantCode: 200,
			want: []string{`tether_hub_build_info{goversion="go`, `version="v9.9.9"} 1`, "tether_hub_agent_sessions 0", "go_goroutines", "process_"}},
		{name: "no metrics on the probe port", l: probes, path: "/metrics", wantCode: 404},
		{name: "no probes on the metrics port", l: metrics, path: "/readyz", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.draining.Store(tt.draining)
			defer h.draining.Store(false)
			code, body := get(tt.l, tt.path)
			if code != tt.wantCode {
				t.Fatalf("status %d; want %d\n%s", code, tt.wantCode, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("answer lacks %q:\n%s", w, body)
				}
			}
		})
	}
	// The HTTPS port keeps /readyz, as the Helm chart's probes use it.
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("https://" + main.Addr().String() + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "readyz check passed") {
		t.Errorf("HTTPS /readyz?verbose: %d %s", resp.StatusCode, b)
	}
}

// TestForwardedRequestLog sends a request to a replica that does not hold
// the tunnel: the holder logs, counts and audits it under the request ID
// the client was given by the replica it reached.
func TestForwardedRequestLog(t *testing.T) {
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	rs := newReplicaSetLogged(t, func(*Config) {}, logger, "a", "b")
	api := newAPIServer(t)
	created := rs.createCluster(t, "a", "g1", "c1")
	rs.runAgent(t, "a", created.Join.JoinToken, api.restConfig())
	poll(t, "replica b learns that a holds the tunnel", func() bool {
		return rs.hubs["b"].hub.rt.lookup(created.Cluster.ID, time.Now(), time.Second).peer == "a"
	})
	req, _ := http.NewRequest("GET", rs.hubs["b"].url+"/k8s/g1/c1/api/v1/namespaces/web/pods", nil)
	req.Header.Set("Authorization", "Bearer sa-token")
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-Id")
	if resp.StatusCode != http.StatusOK || id == "" {
		t.Fatalf("forwarded request: %d, request ID %q", resp.StatusCode, id)
	}
	poll(t, "both replicas log it", func() bool {
		return findLog(t, logs, "request", id) != nil && findLog(t, logs, "request forwarded", id) != nil
	})
	if l := findLog(t, logs, "request", id); l["replica"] != "a" || l["code"] != float64(200) {
		t.Errorf("the holder's log line: %v; want replica a, code 200", l)
	}
	if l := findLog(t, logs, "request forwarded", id); l["replica"] != "b" {
		t.Errorf("the forwarding replica's log line: %v; want replica b", l)
	}
	if a, b := testutil.ToFloat64(rs.hubs["a"].hub.metrics.requests.WithLabelValues("list", "200")),
		testutil.ToFloat64(rs.hubs["b"].hub.metrics.requests.WithLabelValues("list", "200")); a != 1 || b != 0 {
		t.Errorf("requests counted by a %v, by b %v; want 1 and 0 (counted once, where the tunnel is)", a, b)
	}
	poll(t, "the holder audits it under the same ID", func() bool {
		events, err := rs.store.ListAudit(context.Background(), store.AuditFilter{})
		if err != nil {
			return false
		}
		for _, e := range events {
			if e.RequestID == id && e.Replica == "a" {
				return true
			}
		}
		return false
	})
}

// TestOneSidePort gives the probes and the metrics the same listener: one
// server answers both.
func TestOneSidePort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	f := newFixtureConfig(t, func(c *Config) { c.ProbeListener, c.MetricsListener = l, l })
	servers := f.hub.sideServers()
	if len(servers) != 1 || servers[l] == nil {
		t.Fatalf("%d servers; want one, for the one listener", len(servers))
	}
	for _, path := range []string{"/metrics", "/readyz", "/livez?verbose"} {
		rec := httptest.NewRecorder()
		servers[l].Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
}
