package hub

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
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
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store/sqlite"
	"tether.dev/tether/test/oidcprovider"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const adminToken = "tat_test-admin-token"

// fixture is a hub over a real SQLite store, served with TLS.
type fixture struct {
	hub    *Hub
	srv    *httptest.Server
	client *http.Client
	now    time.Time
	mu     sync.Mutex // guards now
}

func newFixture(t *testing.T) *fixture { return newFixtureConfig(t, func(*Config) {}) }

// newFixtureWith is newFixture with sign-in through verifier.
func newFixtureWith(t *testing.T, verifier *identity.Verifier) *fixture {
	t.Helper()
	return newFixtureConfig(t, func(c *Config) { c.Verifier = verifier })
}

// newFixtureConfig is newFixture with the hub's Config changed by edit.
func newFixtureConfig(t *testing.T, edit func(*Config)) *fixture {
	t.Helper()
	return newFixtureLogged(t, edit, slog.New(slog.DiscardHandler))
}

// newFixtureLogged is newFixtureConfig with the hub logging to logger.
func newFixtureLogged(t *testing.T, edit func(*Config), logger *slog.Logger) *fixture {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{now: time.Now().UTC()} // agents sign with the real clock
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: st, AdminTokenHash: HashToken(adminToken), HubID: "test-hub", AssertionKey: key, Replica: "test", Now: f.clock}
	edit(&cfg)
	h, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	f.hub = h
	f.srv = httptest.NewTLSServer(h.Handler())
	// Serve's loop that the tunnels need: their heartbeats and key checks.
	beats, stopBeats := context.WithCancel(context.Background())
	var beating sync.WaitGroup
	beating.Go(func() { h.heartbeatLoop(beats) })
	t.Cleanup(func() {
		stopBeats()
		beating.Wait()
		h.closeAll()
		f.srv.Close()
		h.wg.Wait()
	})
	f.client = f.srv.Client()
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = f.now.Add(d)
}

// call sends a request with an optional bearer token and JSON body and
// returns the status and the body.
func (f *fixture) call(t *testing.T, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	var auth string
	if token != "" {
		auth = "Bearer " + token
	}
	return f.send(t, method, path, auth, r)
}

// send sends a request with an optional Authorization header and returns
// the status and the body.
func (f *fixture) send(t *testing.T, method, path, auth string, body io.Reader) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, f.srv.URL+path, body)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) createCluster(t *testing.T, group, name string) CreatedCluster {
	t.Helper()
	code, body := f.call(t, "POST", "/api/v1/clusters", adminToken, ClusterRequest{Group: group, Name: name})
	if code != http.StatusCreated {
		t.Fatalf("create cluster: %d %s", code, body)
	}
	var c CreatedCluster
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func statusMessage(t *testing.T, body []byte) string {
	t.Helper()
	var st struct{ Kind, Message string }
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("want a Kubernetes Status, got %s", body)
	}
	return st.Message
}

func TestAdminAPI(t *testing.T) {
	f := newFixture(t)
	f.createCluster(t, "prod", "edge-1")
	tests := []struct {
		name     string
		method   string
		path     string
		token    string
		body     any
		wantCode int
		wantMsg  string
	}{
		{name: "no token", method: "POST", path: "/api/v1/clusters", body: ClusterRequest{Group: "g", Name: "n"}, wantCode: 401, wantMsg: "admin token"},
		{name: "wrong token", method: "POST", path: "/api/v1/clusters", token: "tat_nope", body: ClusterRequest{Group: "g", Name: "n"}, wantCode: 401, wantMsg: "admin token"},
		{name: "duplicate", method: "POST", path: "/api/v1/clusters", token: adminToken, body: ClusterRequest{Group: "prod", Name: "edge-1"}, wantCode: 409, wantMsg: "already exists"},
		{name: "bad name", method: "POST", path: "/api/v1/clusters", token: adminToken, body: ClusterRequest{Group: "prod", Name: "Edge_1"}, wantCode: 400, wantMsg: "name"},
		{name: "bad mode", method: "POST", path: "/api/v1/clusters", token: adminToken, body: ClusterRequest{Group: "prod", Name: "x", Mode: "root"}, wantCode: 400, wantMsg: "mode"},
		{name: "unknown cluster", method: "GET", path: "/api/v1/groups/prod/clusters/nope", token: adminToken, wantCode: 404, wantMsg: "no cluster"},
		{name: "token for unknown cluster", method: "POST", path: "/api/v1/groups/prod/clusters/nope/join-tokens", token: adminToken, wantCode: 404, wantMsg: "no cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.call(t, tt.method, tt.path, tt.token, tt.body)
			if diff := cmp.Diff(tt.wantCode, code); diff != "" {
				t.Fatalf("status (-want +got):\n%s\n%s", diff, body)
			}
			if msg := statusMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
			}
		})
	}
	t.Run("list and show", func(t *testing.T) {
		code, body := f.call(t, "GET", "/api/v1/clusters?group=prod", adminToken, nil)
		var list []ClusterView
		if code != 200 || json.Unmarshal(body, &list) != nil || len(list) != 1 || list[0].ID != "/groups/prod/clusters/edge-1" {
			t.Fatalf("list: %d %s", code, body)
		}
		if list[0].Enrolled || list[0].Connected || list[0].Location != "local" || list[0].Status != StatusConnecting || list[0].NodeCount != -1 {
			t.Errorf("fresh cluster view wrong: %+v", list[0])
		}
	})
}

func TestEnroll(t *testing.T) {
	f := newFixture(t)
	c := f.createCluster(t, "prod", "edge-1")
	key := `{"publicKey":"` + strings.Repeat("A", 43) + `="}`
	enroll := func(token string) (int, string) {
		req, _ := http.NewRequest("POST", f.srv.URL+enrollPath, strings.NewReader(key))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := f.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := enroll("tjt_not-a-token"); code != 401 || !strings.Contains(body, "not valid") {
		t.Errorf("unknown token: %d %s", code, body)
	}
	if code, body := enroll(c.Join.JoinToken); code != 200 || !strings.Contains(body, c.Cluster.ID) {
		t.Fatalf("first use: %d %s", code, body)
	}
	if code, body := enroll(c.Join.JoinToken); code != 410 || !strings.Contains(body, "already used") {
		t.Errorf("second use: %d %s", code, body)
	}
	code, body := f.call(t, "POST", "/api/v1/groups/prod/clusters/edge-1/join-tokens", adminToken, nil)
	var join JoinTokenView
	if code != 201 || json.Unmarshal([]byte(body), &join) != nil {
		t.Fatalf("new token: %d %s", code, body)
	}
	f.advance(25 * time.Hour)
	if code, body := enroll(join.JoinToken); code != 410 || !strings.Contains(body, "expired") {
		t.Errorf("expired token: %d %s", code, body)
	}
}

// apiServer is a stand-in for kube-apiserver: it echoes what it received,
// and answers upgrades to /upgrade-refused with 403 while counting every
// byte that arrives afterwards on that connection.
type apiServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	requests []string // method and path of each request
}

func newAPIServer(t testing.TB) *apiServer {
	a := &apiServer{}
	a.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.requests = append(a.requests, r.Method+" "+r.URL.RequestURI())
		a.mu.Unlock()
		if r.URL.Path == "/upgrade-refused" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"forbidden","reason":"Forbidden","code":403}`)
			return
		}
		var imp []string
		for k := range r.Header {
			if strings.HasPrefix(k, "Impersonate-") {
				imp = append(imp, k)
			}
		}
		slices.Sort(imp)
		out := map[string]any{"path": r.URL.RequestURI(), "authorization": r.Header.Get("Authorization"), "impersonate": imp}
		if u := r.Header.Get("Impersonate-User"); u != "" {
			out["user"], out["groups"] = u, r.Header.Values("Impersonate-Group")
		}
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *apiServer) restConfig() *rest.Config {
	cert := a.srv.Certificate()
	return &rest.Config{Host: a.srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}}
}

// seen are the requests the API server received through the tunnel. The
// agent's own checks (its monitor asks for the version, counts nodes and
// reviews its permissions, at times of its own) are left out, so that a
// test can compare what its callers sent.
func (a *apiServer) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.requests {
		switch {
		case r == "GET /version",
			strings.HasPrefix(r, "GET /api/v1/nodes?"),
			strings.HasPrefix(r, "POST /apis/authorization.k8s.io/"):
			continue
		}
		out = append(out, r)
	}
	return out
}

// runAgent runs a real agent against the fixture's hub until the test ends.
func runAgent(t *testing.T, f *fixture, api *apiServer, joinToken, stateDir string) {
	t.Helper()
	a := startAgent(t, f, api, joinToken, stateDir)
	t.Cleanup(func() {
		if err := a.stop(); err != nil {
			t.Errorf("agent: %v", err)
		}
	})
}

// testAgent is a real agent running in the test.
type testAgent struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when Run has returned
	err    error         // what Run returned; read after done
}

// stop ends the agent, if it still runs, and returns what its Run returned.
func (a *testAgent) stop() error {
	a.cancel()
	<-a.done
	return a.err
}

// exited waits up to 10 s for the agent to stop on its own and returns
// what its Run returned.
func (a *testAgent) exited(t *testing.T) error {
	t.Helper()
	select {
	case <-a.done:
		return a.err
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not exit")
		return nil
	}
}

// startAgent runs a real agent against the fixture's hub; the test must
// stop it.
func startAgent(t *testing.T, f *fixture, api *apiServer, joinToken, stateDir string) *testAgent {
	t.Helper()
	hubURL, _ := url.Parse(f.srv.URL)
	a, err := agent.New(agent.Config{
		Hub: hubURL, HubClient: f.srv.Client(), JoinToken: joinToken, StateDir: stateDir,
		APIServer: api.restConfig(), Version: "v-test", MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ta.done)
		ta.err = a.Run(ctx)
	}()
	return ta
}

func waitConnected(t *testing.T, f *fixture, id string) {
	t.Helper()
	poll(t, "the agent connects", func() bool { return f.hub.lookup(id) != nil })
}

func TestGateway(t *testing.T) {
	f := newFixture(t)
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	f.createCluster(t, "prod", "never-enrolled")

	t.Run("offline cluster before the agent comes", func(t *testing.T) {
		code, body := f.call(t, "GET", "/k8s/prod/never-enrolled/api", "sa-token", nil)
		if code != 503 || !strings.Contains(statusMessage(t, body), "no agent has enrolled") {
			t.Errorf("got %d %s", code, body)
		}
	})

	runAgent(t, f, api, c.Join.JoinToken, t.TempDir())
	waitConnected(t, f, c.Cluster.ID)

	tests := []struct {
		name     string
		path     string
		token    string
		header   http.Header
		wantCode int
		want     map[string]any
		wantMsg  string
	}{
		{
			name: "forwarded with the caller's token, impersonation stripped", path: "/k8s/prod/edge-1/api/v1/pods?watch=1",
			token: "sa-token", header: http.Header{"Impersonate-User": {"admin"}, "Impersonate-Group": {"system:masters"}},
			wantCode: 200, want: map[string]any{"path": "/api/v1/pods?watch=1", "authorization": "Bearer sa-token", "impersonate": nil},
		},
		{name: "escaped path kept", path: "/k8s/prod/edge-1/api/v1/namespaces/a%2Fb", token: "t", wantCode: 200,
			want: map[string]any{"path": "/api/v1/namespaces/a%2Fb", "authorization": "Bearer t", "impersonate": nil}},
		{name: "no credentials", path: "/k8s/prod/edge-1/api", wantCode: 401, wantMsg: "no credentials"},
		{name: "unknown cluster", path: "/k8s/prod/nope/api", token: "t", wantCode: 404, wantMsg: "not registered"},
		{name: "invalid names", path: "/k8s/Prod/x/api", token: "t", wantCode: 404, wantMsg: "no such cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", f.srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			resp, err := f.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if diff := cmp.Diff(tt.wantCode, resp.StatusCode); diff != "" {
				t.Fatalf("status (-want +got):\n%s\n%s", diff, body)
			}
			if tt.wantMsg != "" {
				if msg := statusMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
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

	t.Run("a refused upgrade ends the stream: later bytes never reach the API server", func(t *testing.T) {
		before := len(api.seen())
		conn, err := tls.Dial("tcp", f.srv.Listener.Addr().String(), &tls.Config{RootCAs: f.client.Transport.(*http.Transport).TLSClientConfig.RootCAs, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /k8s/prod/edge-1/upgrade-refused HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want the API server's 403", resp.StatusCode)
		}
		// A client that ignores the refusal and streams anyway: what it sends
		// is not a request, so nothing of it may reach the API server.
		conn.Write([]byte("raw stream bytes that must go nowhere\r\n\r\n"))
		io.Copy(io.Discard, br) // the hub closes the connection
		// Prove the tunnel still works and let the API server log settle.
		if code, _ := f.call(t, "GET", "/k8s/prod/edge-1/after", "t", nil); code != 200 {
			t.Fatalf("request after the refused upgrade: %d", code)
		}
		got := api.seen()[before:]
		want := []string{"POST /upgrade-refused", "GET /after"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("requests the API server saw (-want +got):\n%s", diff)
		}
	})

	t.Run("cluster view reports the agent", func(t *testing.T) {
		code, body := f.call(t, "GET", "/api/v1/groups/prod/clusters/edge-1", adminToken, nil)
		var v ClusterView
		if code != 200 || json.Unmarshal(body, &v) != nil {
			t.Fatalf("show: %d %s", code, body)
		}
		if !v.Enrolled || !v.Connected || v.AgentVersion != "v-test" {
			t.Errorf("view %+v: want enrolled, connected, agent version v-test", v)
		}
	})
}

func TestTunnelRefusesUnknownKey(t *testing.T) {
	f := newFixture(t)
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	// Enroll one agent, then make a second agent whose state claims the same
	// cluster with a different key: the hub must refuse it for good.
	good := t.TempDir()
	runAgent(t, f, api, c.Join.JoinToken, good)
	waitConnected(t, f, c.Cluster.ID)

	forged := t.TempDir()
	hubState, _ := json.Marshal(agent.EnrollResponse{Cluster: c.Cluster.ID, HubID: "test-hub", HubKeys: f.hub.hubKeys})
	os.WriteFile(filepath.Join(forged, "hub.json"), hubState, 0o600)
	keyPEM := "-----BEGIN TETHER AGENT KEY-----\n" + "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=" + "\n-----END TETHER AGENT KEY-----\n"
	os.WriteFile(filepath.Join(forged, "agent.key"), []byte(keyPEM), 0o600)
	hubURL, _ := url.Parse(f.srv.URL)
	a, err := agent.New(agent.Config{Hub: hubURL, HubClient: f.srv.Client(), StateDir: forged, APIServer: api.restConfig()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Fatalf("forged agent: %v, want a permanent refusal saying the proof does not verify", err)
	}
}

// TestSignedInCallers signs a user in at a real OIDC provider process and
// sends its token through the gateway: the hub verifies it, checks Cluster
// User, and has the agent impersonate the object ID with the right groups.
func TestSignedInCallers(t *testing.T) {
	ctx := context.Background()
	alice := oidcprovider.User{Username: "alice", Password: "alice-pw", Groups: oidcprovider.GroupIDs("alice-groups", 3)}
	bob := oidcprovider.User{Username: "bob", Password: "bob-pw"}
	p, v := startProvider(t, oidcprovider.Config{Users: []oidcprovider.User{alice, bob}})
	f := newFixtureWith(t, v)
	api := newAPIServer(t)
	kube := f.createCluster(t, "prod", "kube-rbac")
	code, body := f.call(t, "POST", "/api/v1/clusters", adminToken, ClusterRequest{Group: "prod", Name: "hub-rbac", Mode: "hub-rbac"})
	if code != http.StatusCreated {
		t.Fatalf("create hub-rbac cluster: %d %s", code, body)
	}
	var hubCluster CreatedCluster
	json.Unmarshal(body, &hubCluster)
	runAgent(t, f, api, kube.Join.JoinToken, t.TempDir())
	runAgent(t, f, api, hubCluster.Join.JoinToken, t.TempDir())
	waitConnected(t, f, kube.Cluster.ID)
	waitConnected(t, f, hubCluster.Cluster.ID)

	token := func(u oidcprovider.User) string {
		tok, err := p.UserToken(ctx, u.Username, u.Password, oidcprovider.DefaultAudience)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	aliceTok, bobTok := token(alice), token(bob)
	aliceID := oidcprovider.NameUUID("user/alice")
	assign := func(role, assignee, typ, scope string) {
		code, body := f.call(t, "POST", "/api/v1/role-assignments", adminToken, AssignmentRequest{Role: role, Assignee: assignee, AssigneeType: typ, Scope: scope})
		if code != http.StatusCreated {
			t.Fatalf("assign %s: %d %s", role, code, body)
		}
	}
	// Alice may connect to both through one of her groups; hub-RBAC gives
	// her Kubernetes Viewer on the one cluster and Writer in one namespace.
	assign("Cluster User", alice.Groups[1], "group", "/groups/prod")
	assign("Kubernetes Viewer", aliceID, "user", hubCluster.Cluster.ID)
	assign("Kubernetes Writer", aliceID, "user", hubCluster.Cluster.ID+"/namespaces/web")

	tests := []struct {
		name     string
		cluster  string
		token    string
		wantCode int
		want     map[string]any // what the API server received
		wantMsg  string
	}{
		{
			name: "kubernetes-rbac: impersonates the object ID and every directory group", cluster: "kube-rbac", token: aliceTok, wantCode: 200,
			want: map[string]any{"path": "/api/v1/pods", "authorization": "",
				"impersonate": []any{"Impersonate-Group", "Impersonate-User"}, "user": aliceID, "groups": toAny(alice.Groups)},
		},
		{
			name: "hub-rbac: impersonates the role groups only", cluster: "hub-rbac", token: aliceTok, wantCode: 200,
			want: map[string]any{"path": "/api/v1/pods", "authorization": "",
				"impersonate": []any{"Impersonate-Group", "Impersonate-User"}, "user": aliceID,
				"groups": []any{"tether:cluster:view", "tether:namespace:web:edit"}},
		},
		{name: "no Cluster User: refused at the hub", cluster: "kube-rbac", token: bobTok, wantCode: 403, wantMsg: "Cluster User"},
		{name: "a forged token claiming the trusted issuer is refused, not passed on", cluster: "kube-rbac", token: forge(aliceTok), wantCode: 401, wantMsg: "refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(api.seen())
			code, body := f.call(t, "GET", "/k8s/prod/"+tt.cluster+"/api/v1/pods", tt.token, nil)
			if diff := cmp.Diff(tt.wantCode, code); diff != "" {
				t.Fatalf("status (-want +got):\n%s\n%s", diff, body)
			}
			if tt.wantMsg != "" {
				if msg := statusMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
					t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
				}
				if len(api.seen()) != before {
					t.Errorf("a refused request reached the API server")
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

// startProvider starts a real OIDC provider and a verifier that trusts it,
// both stopped when the test ends.
func startProvider(t *testing.T, cfg oidcprovider.Config) (*oidcprovider.Provider, *identity.Verifier) {
	t.Helper()
	p, err := oidcprovider.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	v, err := identity.NewVerifier(identity.Config{Issuers: []identity.IssuerConfig{
		{URL: p.Issuer, Audiences: []string{oidcprovider.DefaultAudience}, CABundle: p.CAPEM},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return p, v
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// forge keeps a token's header and claims but breaks its signature.
func forge(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig := []byte(tok[i+1:])
	if sig[0] == 'A' {
		sig[0] = 'B'
	} else {
		sig[0] = 'A'
	}
	return tok[:i+1] + string(sig)
}
