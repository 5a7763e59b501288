package agent

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/tunnel"
)

func TestTunnelURL(t *testing.T) {
	_, api := fakeAPIServer(t)
	hub := newTestHub(t, "tjt_one")
	// The same hub behind its location's endpoint, on another host:port.
	location := httptest.NewTLSServer(hub)
	t.Cleanup(location.Close)
	hub.lock(func() { hub.tunnelURL = location.URL })
	hubHost, locHost := hub.url().Host, location.Listener.Addr().String()
	state := t.TempDir()
	cfg := Config{Hub: hub.url(), HubClient: hub.srv.Client(), JoinToken: "tjt_one", StateDir: state, APIServer: api,
		CheckInterval: 50 * time.Millisecond}

	for run := range 2 { // enroll, then start again from the stored state
		_, stop := runAgent(t, cfg, nil)
		hub.waitFor("tunnel and status report", func() bool {
			return len(hub.sessions) == run+1 && len(hub.reports) > 0 && hub.reports[len(hub.reports)-1].Host == locHost
		})
		if err := stop(); err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
	}
	hub.lock(func() {})
	var got []string
	for _, h := range hub.hits {
		if !slices.Contains(got, h) {
			got = append(got, h)
		}
	}
	slices.Sort(got)
	want := []string{
		"GET " + locHost + TunnelPath,
		"POST " + hubHost + EnrollPath,
		"POST " + locHost + StatusPath,
	}
	slices.Sort(want)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests at the hub (-want +got):\n%s", diff)
	}
	if hub.enrolled != 1 {
		t.Errorf("%d enrollments, want 1", hub.enrolled)
	}
	var stored EnrollResponse
	b, _ := os.ReadFile(filepath.Join(state, StateHubFile))
	if err := json.Unmarshal(b, &stored); err != nil || stored.TunnelURL != location.URL {
		t.Errorf("stored enrollment %s: want tunnelURL %s", b, location.URL)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	apiSrv, api := fakeAPIServer(t)
	hub := newTestHub(t, "tjt_one")
	hub.lock(func() { hub.enrollCode = http.StatusServiceUnavailable }) // down at first
	l, get := healthListener(t)
	runAgent(t, Config{Hub: hub.url(), HubClient: hub.srv.Client(), JoinToken: "tjt_one", StateDir: t.TempDir(), APIServer: api,
		Version: "v9.9.9", CheckInterval: 20 * time.Millisecond, StatusInterval: time.Hour, HealthListener: l, MetricsListener: l,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Tunnel: tunnel.Config{KeepAliveInterval: 20 * time.Millisecond}}, nil) // pings time the tunnel
	expect := func(t *testing.T, what, path string, wantCode int, wantIn ...string) {
		t.Helper()
		eventually(t, what, func() (bool, string) {
			code, body := get(path)
			ok := code == wantCode
			for _, s := range wantIn {
				ok = ok && strings.Contains(body, s)
			}
			return ok, path + ": " + body
		})
	}
	metric := func(t *testing.T, series string, want func(float64) bool) {
		t.Helper()
		eventually(t, series, func() (bool, string) {
			_, body := get("/metrics")
			v := metricValue(body, series)
			return want(v), fmt.Sprintf("%s = %v (-1: absent)", series, v)
		})
	}
	is := func(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
	atLeast := func(want float64) func(float64) bool { return func(v float64) bool { return v >= want } }

	t.Run("not enrolled: alive, not ready", func(t *testing.T) {
		expect(t, "readyz failing on state", "/readyz", 503, "[-]state failed: not enrolled yet", "[+]apiserver ok", "readyz check failed")
		expect(t, "livez", "/livez", 200, "ok")
		expect(t, "livez verbose", "/livez?verbose", 200, "[+]ping ok", "[+]monitor ok", "livez check passed")
		expect(t, "tunnel check", "/readyz/tunnel", 503, "not connected yet")
		metric(t, "tether_agent_tunnel_connected", is(0))
		metric(t, `tether_agent_build_info{version="v9.9.9"}`, is(1))
		metric(t, "tether_agent_apiserver_reachable", is(1))
	})

	hub.lock(func() { hub.enrollCode = 0 })
	t.Run("connected: ready", func(t *testing.T) {
		expect(t, "readyz", "/readyz", 200, "ok")
		expect(t, "readyz verbose", "/readyz?verbose", 200, "[+]state ok", "[+]apiserver ok", "[+]tunnel ok", "readyz check passed")
		expect(t, "tunnel check", "/readyz/tunnel", 200, "ok")
		metric(t, "tether_agent_tunnel_connected", is(1))
		metric(t, "tether_agent_tunnel_connects_total", is(1))
		metric(t, "tether_agent_status_report_last_success_timestamp_seconds", atLeast(float64(time.Now().Add(-time.Minute).Unix())))
		metric(t, `tether_agent_status_reports_total{result="ok"}`, atLeast(1))
		metric(t, "go_goroutines", atLeast(1))
		metric(t, "process_cpu_seconds_total", atLeast(0))
	})

	t.Run("forwarded requests are counted", func(t *testing.T) {
		sess := hub.liveSessions()[0]
		tests := []struct {
			name     string
			header   http.Header
			wantCode int
		}{
			{name: "a request", header: http.Header{"Authorization": {"Bearer sa-token"}}, wantCode: 200},
			{name: "an upgrade", header: http.Header{"Authorization": {"Bearer sa-token"}, "Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}}, wantCode: 200},
			{name: "a refused request", header: http.Header{}, wantCode: 401},
		}
		for _, tt := range tests {
			if code, body := hub.get(sess, "/api/v1/pods", tt.header); code != tt.wantCode {
				t.Errorf("%s: %d %s, want %d", tt.name, code, body, tt.wantCode)
			}
		}
		metric(t, `tether_agent_requests_total{code="2xx",upgrade="false"}`, is(1))
		metric(t, `tether_agent_requests_total{code="2xx",upgrade="true"}`, is(1))
		metric(t, `tether_agent_requests_total{code="4xx",upgrade="false"}`, is(1))
		metric(t, "tether_agent_tunnel_received_bytes_total", atLeast(100))
		metric(t, "tether_agent_tunnel_sent_bytes_total", atLeast(100))
		metric(t, "tether_agent_tunnel_active_streams", is(0))
		// The list and the refused list are timed; the upgrade is long-running.
		metric(t, `tether_agent_request_duration_seconds_count{verb="list"}`, is(2))
		metric(t, `tether_agent_long_running_requests{kind="proxy"}`, is(0))
		metric(t, "tether_agent_tunnel_rtt_seconds_count", atLeast(1))
	})

	t.Run("hub down: the tunnel check fails, the agent stays ready, the hub hears at once", func(t *testing.T) {
		n := hub.numReports()
		hub.lock(func() { hub.tunnelCode = http.StatusServiceUnavailable })
		hub.closeSessions()
		expect(t, "tunnel check failing", "/readyz/tunnel", 503, "[-]tunnel failed: dial hub", "503")
		expect(t, "readyz still ok", "/readyz", 200, "ok")
		expect(t, "readyz verbose listing the tunnel", "/readyz?verbose", 200,
			"[-]tunnel failed (informational, not counted): dial hub", "readyz check passed")
		metric(t, "tether_agent_tunnel_connected", is(0))
		metric(t, `tether_agent_tunnel_disconnects_total{reason="closed"}`, is(1))
		metric(t, `tether_agent_tunnel_connect_failures_total{reason="http"}`, atLeast(1))
		// StatusInterval is an hour: only the change of LastError sends this.
		hub.waitReport("LastError naming the refused tunnel", n, func(r hubReport) bool {
			return strings.Contains(r.Report.LastError, "dial hub") && strings.Contains(r.Report.LastError, "503")
		})
	})

	t.Run("API server gone: not ready, reported at once", func(t *testing.T) {
		n := hub.numReports()
		apiSrv.Close()
		expect(t, "readyz failing on the API server", "/readyz", 503, "[-]apiserver failed: no answer from the API server", "readyz check failed")
		expect(t, "livez", "/livez", 200, "ok")
		metric(t, "tether_agent_apiserver_reachable", is(0))
		rep, _ := hub.waitReport("LastError naming the API server", n, func(r hubReport) bool {
			return strings.HasPrefix(r.Report.LastError, "API server unreachable")
		})
		if rep.Report.NodeCount != -1 {
			t.Errorf("node count %d with the API server gone, want -1", rep.Report.NodeCount)
		}
	})
}

func TestStatusEndpointMissing(t *testing.T) {
	_, api := fakeAPIServer(t)
	hub := newTestHub(t, "tjt_one")
	hub.lock(func() { hub.statusCode = http.StatusNotFound }) // a hub from before status reports
	var logs syncBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, stop := runAgent(t, Config{Hub: hub.url(), HubClient: hub.srv.Client(), JoinToken: "tjt_one", StateDir: t.TempDir(), APIServer: api,
		CheckInterval: 10 * time.Millisecond, StatusInterval: 10 * time.Millisecond}, logger)
	hub.waitFor("5 status reports", func() bool {
		n := 0
		for _, h := range hub.hits {
			if strings.HasSuffix(h, StatusPath) {
				n++
			}
		}
		return n >= 5 && len(hub.sessions) == 1
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var debug, warn int
	for line := range strings.Lines(logs.String()) {
		var rec struct{ Level, Msg string }
		json.Unmarshal([]byte(line), &rec)
		switch {
		case rec.Msg == "the hub has no status endpoint yet; reports continue quietly" && rec.Level == "DEBUG":
			debug++
		case rec.Msg == "status report failed":
			warn++
		}
	}
	if debug != 1 || warn != 0 {
		t.Errorf("logged the missing endpoint %d times at debug and %d failures; want once, and none\n%s", debug, warn, logs.String())
	}
}

func TestLastError(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "short", in: "API server unreachable", want: "API server unreachable"},
		{name: "exactly 1 KiB", in: long[:1024], want: long[:1024]},
		{name: "clipped", in: long, want: long[:1021] + "..."},
		{name: "never splits a character", in: long[:1020] + "€€", want: long[:1020] + "..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := lastError(nil, errString(tt.in), nil)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestLivezWedged(t *testing.T) {
	_, api := fakeAPIServer(t)
	a, err := New(Config{Hub: &url.URL{Scheme: "https", Host: "hub.example.com"}, StateDir: t.TempDir(), APIServer: api}, nil)
	if err != nil {
		t.Fatal(err)
	}
	a.vitals.s.beat = time.Now().Add(-time.Hour) // the monitor never ran again
	mux := http.NewServeMux()
	a.healthRoutes(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tests := []struct {
		path     string
		wantCode int
		wantIn   string
	}{
		{path: "/livez", wantCode: 503, wantIn: "[-]monitor failed: the API server checks have not run for 1h0m0s"},
		{path: "/livez/monitor", wantCode: 503, wantIn: "[-]monitor failed"},
		{path: "/livez/ping", wantCode: 200, wantIn: "ok"},
		{path: "/readyz/apiserver", wantCode: 503, wantIn: "not been probed yet"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantIn) {
				t.Errorf("%d %s; want %d with %q", resp.StatusCode, body, tt.wantCode, tt.wantIn)
			}
		})
	}
}
