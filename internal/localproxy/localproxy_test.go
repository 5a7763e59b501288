package localproxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// upstream is a stand-in for the hub gateway that reports what it received.
func upstream(t *testing.T) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/k8s/g/c/upgrade":
			if r.Header.Get("Upgrade") != "test-proto" {
				http.Error(w, "no upgrade", 400)
				return
			}
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test-proto\r\n\r\n")
			brw.Flush()
			line, _ := brw.ReadString('\n')
			brw.WriteString("echo:" + line)
			brw.Flush()
		default:
			hdr := map[string]string{"path": r.URL.Path, "query": r.URL.RawQuery, "authorization": r.Header.Get("Authorization")}
			for k := range r.Header {
				if strings.HasPrefix(k, "Impersonate-") {
					hdr["impersonate"] = k
				}
			}
			json.NewEncoder(w).Encode(hdr)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func startProxy(t *testing.T, up *httptest.Server) (*Proxy, string, *http.Client) {
	t.Helper()
	u, _ := url.Parse(up.URL + "/k8s/g/c")
	p, err := New(Config{
		Upstream:   u,
		Transport:  up.Client().Transport.(*http.Transport).Clone(),
		Credential: func(context.Context) (string, error) { return "real-token", nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Serve(context.Background(), l) }()
	t.Cleanup(func() {
		p.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAData())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	t.Cleanup(client.CloseIdleConnections)
	return p, "https://" + l.Addr().String(), client
}

func TestForwarding(t *testing.T) {
	up := upstream(t)
	p, base, client := startProxy(t, up)
	tests := []struct {
		name       string
		host       string
		header     http.Header
		wantCode   int
		wantFields map[string]string
	}{
		{
			name:     "local token swapped for the real one, impersonation dropped",
			header:   http.Header{"Authorization": {"Bearer " + p.LocalToken()}, "Impersonate-User": {"admin"}, "Impersonate-Group": {"system:masters"}},
			wantCode: 200,
			wantFields: map[string]string{"path": "/k8s/g/c/api/v1/pods", "query": "watch=1",
				"authorization": "Bearer real-token"},
		},
		{name: "missing token", header: http.Header{}, wantCode: 401},
		{name: "wrong token", header: http.Header{"Authorization": {"Bearer nope"}}, wantCode: 401},
		{name: "real token is not accepted locally", header: http.Header{"Authorization": {"Bearer real-token"}}, wantCode: 401},
		{name: "non-loopback host name (DNS rebinding)", host: "evil.example.com", header: http.Header{"Authorization": {"Bearer " + p.LocalToken()}}, wantCode: 403},
		{name: "localhost host name", host: "localhost", header: http.Header{"Authorization": {"Bearer " + p.LocalToken()}}, wantCode: 200,
			wantFields: map[string]string{"path": "/k8s/g/c/api/v1/pods", "query": "watch=1", "authorization": "Bearer real-token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/api/v1/pods?watch=1", nil)
			req.Header = tt.header
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if diff := cmp.Diff(tt.wantCode, resp.StatusCode); diff != "" {
				t.Fatalf("status (-want +got):\n%s\n%s", diff, body)
			}
			if tt.wantCode != 200 {
				var status struct{ Kind, Message string }
				if err := json.Unmarshal(body, &status); err != nil || status.Kind != "Status" || status.Message == "" {
					t.Errorf("want a Kubernetes Status with a message, got %s", body)
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if diff := cmp.Diff(tt.wantFields, got); diff != "" {
				t.Errorf("what the hub received (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUpgradePassesThrough(t *testing.T) {
	up := upstream(t)
	p, base, _ := startProxy(t, up)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(p.CAData())
	conn, err := tls.Dial("tcp", strings.TrimPrefix(base, "https://"), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: test-proto\r\n\r\n", p.LocalToken())
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	fmt.Fprintf(conn, "hello\n")
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff("echo:hello\n", line); diff != "" {
		t.Errorf("bytes after upgrade (-want +got):\n%s", diff)
	}
}

func TestHubUnreachableIsAStatus(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	u, _ := url.Parse("https://" + dead + "/k8s/g/c")
	p, err := New(Config{Upstream: u, Credential: func(context.Context) (string, error) { return "t", nil }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "https://127.0.0.1/api", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set("Authorization", "Bearer "+p.LocalToken())
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusBadGateway || !strings.Contains(rec.Body.String(), `"kind":"Status"`) || !strings.Contains(rec.Body.String(), dead) {
		t.Errorf("got %d %s; want a 502 Status naming the hub", rec.Code, rec.Body.String())
	}
}

func TestNonLoopbackPeerRefused(t *testing.T) {
	u, _ := url.Parse("https://hub.example/k8s/g/c")
	p, err := New(Config{Upstream: u, Credential: func(context.Context) (string, error) { return "t", nil }})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "https://127.0.0.1/api", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	req.Header.Set("Authorization", "Bearer "+p.LocalToken())
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Errorf("got %d, want 403", rec.Code)
	}
}
