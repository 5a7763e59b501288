package healthz_test

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/healthz"
)

func TestServe(t *testing.T) {
	ok := func() error { return nil }
	down := func() error { return errors.New("the store did not answer") }
	tests := []struct {
		name     string
		checks   []healthz.Check
		path     string
		wantCode int
		wantBody string
	}{
		{name: "all pass", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Run: ok}},
			path: "/readyz", wantCode: 200, wantBody: "ok"},
		{name: "all pass, verbose", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Run: ok}},
			path: "/readyz?verbose", wantCode: 200, wantBody: "[+]ping ok\n[+]store ok\nreadyz check passed\n"},
		{name: "one fails: the list without verbose", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Run: down}},
			path: "/readyz", wantCode: 503, wantBody: "[+]ping ok\n[-]store failed: the store did not answer\nreadyz check failed\n"},
		{name: "an informational one fails", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Informational: true, Run: down}},
			path: "/readyz", wantCode: 200, wantBody: "ok"},
		{name: "an informational one fails, verbose", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Informational: true, Run: down}},
			path: "/readyz?verbose", wantCode: 200, wantBody: "[+]ping ok\n[-]store failed (informational, not counted): the store did not answer\nreadyz check passed\n"},
		{name: "an informational one alone fails", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Informational: true, Run: down}},
			path: "/readyz/store", wantCode: 503, wantBody: "[-]store failed: the store did not answer\n"},
		{name: "one alone passes", checks: []healthz.Check{{Name: "ping", Run: ok}, {Name: "store", Run: down}},
			path: "/readyz/ping", wantCode: 200, wantBody: "ok"},
		{name: "no such check", checks: []healthz.Check{{Name: "ping", Run: ok}},
			path: "/readyz/store", wantCode: 404, wantBody: "404 page not found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mux := http.NewServeMux()
			healthz.Serve(mux, "readyz", tt.checks)
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest("GET", tt.path, nil))
			if rec.Code != tt.wantCode {
				t.Errorf("status %d, want %d", rec.Code, tt.wantCode)
			}
			if diff := cmp.Diff(tt.wantBody, rec.Body.String()); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestServeHeaders: probe answers are plain text a browser never sniffs.
func TestServeHeaders(t *testing.T) {
	mux := http.NewServeMux()
	healthz.Serve(mux, "livez", []healthz.Check{{Name: "ping", Run: func() error { return nil }}})
	for _, path := range []string{"/livez", "/livez/ping"} {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		got := map[string]string{"Content-Type": rec.Header().Get("Content-Type"), "X-Content-Type-Options": rec.Header().Get("X-Content-Type-Options")}
		want := map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s headers (-want +got):\n%s", path, diff)
		}
	}
}

// TestPortsServers: one server per listener, answering what that listener
// carries and nothing else.
func TestPortsServers(t *testing.T) {
	a, b := fakeListener("a"), fakeListener("b")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("metrics")) })
	routes := func(mux *http.ServeMux) {
		healthz.Serve(mux, "livez", []healthz.Check{{Name: "ping", Run: func() error { return nil }}})
	}
	tests := []struct {
		name  string
		ports healthz.Ports
		// want is, per listener, the status of each path.
		want map[net.Listener]map[string]int
	}{
		{name: "none", ports: healthz.Ports{Routes: routes, MetricsHandler: metrics}, want: map[net.Listener]map[string]int{}},
		{name: "two listeners", ports: healthz.Ports{Probes: a, Routes: routes, Metrics: b, MetricsHandler: metrics},
			want: map[net.Listener]map[string]int{
				a: {"/livez": 200, "/metrics": 404},
				b: {"/livez": 404, "/metrics": 200},
			}},
		{name: "one listener for both", ports: healthz.Ports{Probes: a, Routes: routes, Metrics: a, MetricsHandler: metrics},
			want: map[net.Listener]map[string]int{a: {"/livez": 200, "/metrics": 200}}},
		{name: "probes only", ports: healthz.Ports{Probes: a, Routes: routes, MetricsHandler: metrics},
			want: map[net.Listener]map[string]int{a: {"/livez": 200, "/metrics": 404}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			servers := tt.ports.Servers(slog.New(slog.DiscardHandler))
			got := map[net.Listener]map[string]int{}
			for l, s := range servers {
				got[l] = map[string]int{}
				for _, path := range []string{"/livez", "/metrics"} {
					rec := httptest.NewRecorder()
					s.Handler.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
					got[l][path] = rec.Code
				}
				if s.ReadHeaderTimeout == 0 || s.ReadTimeout == 0 || s.WriteTimeout == 0 || s.IdleTimeout == 0 {
					t.Errorf("server of %s has no timeouts: %+v", l.Addr(), s)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("servers (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeListener is a listener never served: Servers only needs it as a
// key.
type fakeListener string

func (l fakeListener) Accept() (net.Conn, error) { return nil, net.ErrClosed }
func (l fakeListener) Close() error              { return nil }
func (l fakeListener) Addr() net.Addr            { return &net.UnixAddr{Name: string(l), Net: "unix"} }
