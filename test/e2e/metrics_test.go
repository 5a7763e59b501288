package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// freeAddrs returns two loopback addresses that were free a moment ago.
func freeAddrs() (string, string, error) {
	var addrs []string
	for range 2 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", "", err
		}
		defer l.Close()
		addrs = append(addrs, l.Addr().String())
	}
	return addrs[0], addrs[1], nil
}

// scrape GETs http://addr/path from the test's host.
func scrape(ctx context.Context, addr, path string) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// seriesValue is the value of series (name and labels, as the text format
// writes them) in a /metrics body; -1 if absent.
func seriesValue(body, series string) float64 {
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// TestHubMetrics runs kubectl through the real hub and agent, then reads
// the real hub's metrics port: the request counter moved, the tunnel is
// counted and timed, and no series names the caller or the cluster. The
// probe port answers as kube-apiserver's does.
func TestHubMetrics(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	hubScrape := func() string {
		t.Helper()
		code, body, err := scrape(ctx, hubMetricsAddr, "/metrics")
		if err != nil || code != http.StatusOK {
			t.Fatalf("the hub's /metrics: %d %v", code, err)
		}
		return body
	}
	const lists = `tether_hub_requests_total{code="200",verb="list"}`
	before := max(seriesValue(hubScrape(), lists), 0)

	lp := startProxy(t, e, e.SAToken)
	for range 3 {
		if out, err := lp.Kubectl(ctx, "", "get", "configmaps", "-n", "default").CombinedOutput(); err != nil {
			t.Fatalf("kubectl get configmaps: %v\n%s", err, out)
		}
	}
	body := hubScrape()
	if after := seriesValue(body, lists); after < before+3 {
		t.Errorf("%s went from %v to %v; want at least 3 more", lists, before, after)
	}
	for _, series := range []string{"tether_hub_agent_sessions", "tether_hub_agent_connects_total", "tether_hub_tunnel_sent_bytes_total",
		"tether_hub_tunnel_received_bytes_total", `tether_hub_authorization_decisions_total{decision="allow",mode="token"}`,
		`tether_hub_request_duration_seconds_count{verb="list"}`, `tether_hub_store_query_duration_seconds_count{operation="GetCluster"}`} {
		if v := seriesValue(body, series); v < 1 {
			t.Errorf("%s = %v; want at least 1", series, v)
		}
	}
	if !strings.Contains(body, `tether_hub_build_info{goversion="go`) {
		t.Error("no tether_hub_build_info")
	}
	// The caller is a service account (demo-user), the cluster demo/edge-1;
	// alice signs in in other tests of the package.
	for _, leak := range []string{"serviceaccount", "demo-user", e.Name, "alice", "mallory"} {
		if strings.Contains(body, leak) {
			t.Errorf("the hub's metrics name %q", leak)
		}
	}
	// The keepalive pings (every 20 s) time the tunnel.
	deadline := time.Now().Add(45 * time.Second)
	for seriesValue(body, "tether_hub_tunnel_rtt_seconds_count") < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no tunnel RTT observed within 45 s")
		}
		time.Sleep(time.Second)
		body = hubScrape()
	}

	code, ready, err := scrape(ctx, hubProbeAddr, "/readyz?verbose")
	if err != nil || code != http.StatusOK {
		t.Fatalf("the hub's /readyz?verbose: %d %v\n%s", code, err, ready)
	}
	for _, want := range []string{"[+]shutdown ok", "[+]serving ok", "[+]routes ok", "[+]store ok", "readyz check passed"} {
		if !strings.Contains(ready, want) {
			t.Errorf("/readyz?verbose lacks %q:\n%s", want, ready)
		}
	}
	if code, live, _ := scrape(ctx, hubProbeAddr, "/livez"); code != http.StatusOK || live != "ok" {
		t.Errorf("/livez: %d %q", code, live)
	}
}
