package cli

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort returns a loopback address that was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestHubProbeAndMetricsPorts runs `tether hub` with its probe and metrics
// ports and reads them in plain HTTP.
func TestHubProbeAndMetricsPorts(t *testing.T) {
	probes, metrics, listen, dataDir := freePort(t), freePort(t), freePort(t), t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncWriter
	var done sync.WaitGroup
	var runErr error
	done.Go(func() {
		runErr = Run(ctx, []string{"tether", "hub", "--data-dir", dataDir, "--listen", listen,
			"--health-probe-bind-address", probes, "--metrics-bind-address", metrics, "--drain-delay", "0", "--drain-grace", "1s"},
			strings.NewReader(""), io.Discard, &stderr)
	})
	defer func() {
		cancel()
		done.Wait()
		if runErr != nil {
			t.Errorf("tether hub: %v\n%s", runErr, stderr.String())
		}
	}()
	get := func(addr, path string) (int, string, error) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, err := get(probes, "/readyz?verbose")
		if err == nil && code == http.StatusOK {
			if !strings.Contains(body, "[+]store ok") || !strings.Contains(body, "readyz check passed") {
				t.Errorf("/readyz?verbose:\n%s", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hub's probe port never said ready: %d %q %v\n%s", code, body, err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body, err := get(metrics, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	for _, want := range []string{"tether_hub_build_info{", "tether_hub_agent_sessions 0", `tether_hub_store_query_duration_seconds_count{operation="CountEphemeral"}`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if code, _, _ := get(probes, "/metrics"); code != http.StatusNotFound {
		t.Errorf("/metrics on the probe port: %d; want 404 (it has a port of its own)", code)
	}
}

// syncWriter is a bytes.Buffer safe for the hub's log and the test.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
