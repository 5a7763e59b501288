package agent

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/identity"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeAPIServer reports what it received, and which HTTP version carried it.
func fakeAPIServer(t *testing.T) (*httptest.Server, *rest.Config) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var imp map[string][]string
		for k, v := range r.Header {
			if strings.HasPrefix(k, "Impersonate-") || strings.HasPrefix(k, "X-Forwarded-") || k == identity.AssertionHeader {
				if imp == nil {
					imp = map[string][]string{}
				}
				imp[k] = v
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"proto": r.Proto, "path": r.URL.RequestURI(), "authorization": r.Header.Get("Authorization"), "impersonate": imp})
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg := &rest.Config{
		Host:            srv.URL,
		BearerToken:     "the-agent's-own-token-must-not-leak",
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
	}
	return srv, cfg
}

// hubKeys makes a hub signing key and the verifier an agent would build.
func hubKeys(t *testing.T) (*identity.AssertionSigner, *identity.AssertionVerifier) {
	t.Helper()
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := identity.NewAssertionSigner("test-hub", key)
	if err != nil {
		t.Fatal(err)
	}
	v, err := identity.NewAssertionVerifier("test-hub", s.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

func TestAPIProxy(t *testing.T) {
	_, cfg := fakeAPIServer(t)
	p, err := newAPIProxy(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	const cluster = "/groups/g/clusters/c"
	signer, verifier := hubKeys(t)
	otherSigner, _ := hubKeys(t)
	front := httptest.NewServer(p.forCluster(cluster, verifier))
	defer front.Close()
	sign := func(s *identity.AssertionSigner, a identity.Assertion) string {
		tok, err := s.Sign(a, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	tokenMode := sign(signer, identity.Assertion{Cluster: cluster, Mode: identity.ModeToken})
	asAlice := sign(signer, identity.Assertion{Cluster: cluster, Mode: identity.ModeImpersonate,
		Subject: "3f2a5b1c-0000-4000-8000-000000000001", Groups: []string{"g-1", "tether:cluster:view"}})
	tests := []struct {
		name     string
		header   http.Header
		wantCode int
		want     map[string]any
	}{
		{
			name: "impersonation from the assertion, with the agent's own credentials",
			header: http.Header{identity.AssertionHeader: {asAlice}, "Authorization": {"Bearer caller-token"},
				"Impersonate-User": {"admin"}, "Impersonate-Group": {"system:masters"}},
			wantCode: 200,
			want: map[string]any{"proto": "HTTP/2.0", "path": "/api/v1/pods?limit=1", "authorization": "Bearer the-agent's-own-token-must-not-leak",
				"impersonate": map[string]any{"Impersonate-User": []any{"3f2a5b1c-0000-4000-8000-000000000001"}, "Impersonate-Group": []any{"g-1", "tether:cluster:view"}}},
		},
		{
			name: "a client's Connection header cannot remove the impersonation",
			header: http.Header{identity.AssertionHeader: {asAlice}, "Connection": {"Impersonate-User, impersonate-group"},
				"impersonate-user": {"admin"}},
			wantCode: 200,
			want: map[string]any{"proto": "HTTP/2.0", "path": "/api/v1/pods?limit=1", "authorization": "Bearer the-agent's-own-token-must-not-leak",
				"impersonate": map[string]any{"Impersonate-User": []any{"3f2a5b1c-0000-4000-8000-000000000001"}, "Impersonate-Group": []any{"g-1", "tether:cluster:view"}}},
		},
		{name: "no assertion", header: http.Header{"Authorization": {"Bearer sa-token"}}, wantCode: 401},
		{name: "assertion from another hub key", header: http.Header{"Authorization": {"Bearer sa-token"},
			identity.AssertionHeader: {sign(otherSigner, identity.Assertion{Cluster: cluster, Mode: identity.ModeToken})}}, wantCode: 401},
		{name: "assertion for another cluster", header: http.Header{"Authorization": {"Bearer sa-token"},
			identity.AssertionHeader: {sign(signer, identity.Assertion{Cluster: "/groups/g/clusters/other", Mode: identity.ModeToken})}}, wantCode: 401},
		{
			name:     "caller's token through, impersonation and forwarding headers dropped",
			header:   http.Header{identity.AssertionHeader: {tokenMode}, "Authorization": {"Bearer sa-token"}, "Impersonate-User": {"admin"}, "Impersonate-Extra-Scopes": {"x"}, "X-Forwarded-For": {"1.2.3.4"}},
			wantCode: 200,
			want:     map[string]any{"proto": "HTTP/2.0", "path": "/api/v1/pods?limit=1", "authorization": "Bearer sa-token", "impersonate": nil},
		},
		{
			name:     "upgrade requests travel over HTTP/1.1",
			header:   http.Header{identity.AssertionHeader: {tokenMode}, "Authorization": {"Bearer sa-token"}, "Connection": {"Upgrade"}, "Upgrade": {"SPDY/3.1"}},
			wantCode: 200,
			want:     map[string]any{"proto": "HTTP/1.1", "path": "/api/v1/pods?limit=1", "authorization": "Bearer sa-token", "impersonate": nil},
		},
		{name: "token mode without a token", header: http.Header{identity.AssertionHeader: {tokenMode}}, wantCode: 401},
		{name: "basic auth is not a token", header: http.Header{identity.AssertionHeader: {tokenMode}, "Authorization": {"Basic YTpi"}}, wantCode: 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", front.URL+"/api/v1/pods?limit=1", nil)
			req.Header = tt.header
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if diff := cmp.Diff(tt.wantCode, resp.StatusCode); diff != "" {
				t.Fatalf("status (-want +got):\n%s\n%s", diff, body)
			}
			if tt.want == nil {
				if !strings.Contains(string(body), `"kind":"Status"`) {
					t.Errorf("want a Status, got %s", body)
				}
				return
			}
			var got map[string]any
			json.Unmarshal(body, &got)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("what the API server received (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEnrollmentAndRefusals(t *testing.T) {
	_, api := fakeAPIServer(t)
	tests := []struct {
		name       string
		tokens     []string // what the hub issued; a spent one is "tjt_used"
		token      string
		tunnelCode int
		wantErr    string
		wantState  bool
	}{
		{name: "used join token", tokens: []string{"tjt_used"}, token: "tjt_used", wantErr: "refused with 410"},
		{name: "unknown join token", tokens: []string{"tjt_good"}, token: "tjt_bad", wantErr: "refused with 401"},
		{name: "no join token", token: "", wantErr: "has no join token"},
		{name: "enrolled, then the cluster is gone", tokens: []string{"tjt_good"}, token: "tjt_good", tunnelCode: http.StatusNotFound,
			wantErr: "answers 404", wantState: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub := newTestHub(t, tt.tokens...)
			hub.lock(func() {
				hub.tunnelCode = tt.tunnelCode
				if _, ok := hub.tokens["tjt_used"]; ok {
					hub.tokens["tjt_used"] = true
				}
			})
			state := filepath.Join(t.TempDir(), "state")
			a, err := New(Config{Hub: hub.url(), HubClient: hub.srv.Client(), JoinToken: tt.token, StateDir: state, APIServer: api}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = a.Run(ctx)
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run: %v; want a permanent refusal mentioning %q", err, tt.wantErr)
			}
			info, statErr := os.Stat(filepath.Join(state, "agent.key"))
			if !tt.wantState {
				if statErr == nil {
					t.Errorf("a key was stored although enrollment failed")
				}
				return
			}
			if statErr != nil || info.Mode().Perm() != 0o600 {
				t.Fatalf("agent key: %v, mode %v; want 0600", statErr, info.Mode().Perm())
			}
			dir, _ := os.Stat(state)
			if dir.Mode().Perm() != 0o700 {
				t.Errorf("state directory mode %v, want 0700", dir.Mode().Perm())
			}
			var stored EnrollResponse
			b, _ := os.ReadFile(filepath.Join(state, "hub.json"))
			if err := json.Unmarshal(b, &stored); err != nil || stored.Cluster != testCluster || stored.HubID != "test-hub" || len(stored.HubKeys) != 1 {
				t.Errorf("stored enrollment %s: want the cluster ID, hub ID and one hub key", b)
			}
		})
	}
}
