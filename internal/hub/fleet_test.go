package hub

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
)

// set sets the hub's clock.
func (f *fixture) set(now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.now = now
}

// enrollKey enrolls a key of the test's own with the join token, as an
// agent would, and returns it with the hub's answer.
func (f *fixture) enrollKey(t *testing.T, joinToken string) (ed25519.PrivateKey, agent.EnrollResponse) {
	t.Helper()
	key, err := agentkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	req := agent.EnrollRequest{PublicKey: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}
	code, b := f.call(t, "POST", enrollPath, joinToken, req)
	var er agent.EnrollResponse
	if code != http.StatusOK || json.Unmarshal(b, &er) != nil {
		t.Fatalf("enroll: %d %s", code, b)
	}
	return key, er
}

// proof is a fresh agent proof of key for cluster, for this hub.
func (f *fixture) proof(t *testing.T, key ed25519.PrivateKey, cluster string) string {
	t.Helper()
	u, _ := url.Parse(f.srv.URL)
	p, err := agentkey.Sign(key, cluster, u.Host, time.Now()) // the agent's clock is the real one
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// report posts an agent status report body with the Authorization header
// auth (none when empty).
func (f *fixture) report(t *testing.T, auth, body string) (int, []byte) {
	t.Helper()
	return f.send(t, "POST", statusPath, auth, strings.NewReader(body))
}

// show returns the admin API's view of a cluster.
func (f *fixture) show(t *testing.T, group, name string) ClusterView {
	t.Helper()
	return must[ClusterView](t, f, "GET", "/api/v1/groups/"+group+"/clusters/"+name, adminToken, nil, http.StatusOK)
}

// statusOf is the part of a ClusterView that agents' reports and
// heartbeats decide.
type statusOf struct {
	Status                          Connectivity
	Connected                       bool
	AgentVersion, KubernetesVersion string
	NodeCount                       int
	LastError                       string
}

func statusPart(v ClusterView) statusOf {
	return statusOf{v.Status, v.Connected, v.AgentVersion, v.KubernetesVersion, v.NodeCount, v.LastError}
}

// writeAgentState makes stateDir hold key as the enrolled agent of er's
// cluster, as the agent itself would after enrolling.
func writeAgentState(t *testing.T, stateDir string, key ed25519.PrivateKey, er agent.EnrollResponse) {
	t.Helper()
	b, _ := json.Marshal(er)
	if err := os.WriteFile(filepath.Join(stateDir, "hub.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stateDir, "agent.key"), agentkey.MarshalPrivateKey(key), 0o600); err != nil {
		t.Fatal(err)
	}
}

// readAgentKey reads the key an agent keeps in its state directory.
func readAgentKey(t *testing.T, stateDir string) ed25519.PrivateKey {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(stateDir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := agentkey.UnmarshalPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// poll waits up to 10 s for cond, which another goroutine makes true.
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond) // polling another goroutine's progress
	}
}

func TestAgentStatusReports(t *testing.T) {
	f := newFixture(t)
	c := f.createCluster(t, "prod", "edge-1")
	key, _ := f.enrollKey(t, c.Join.JoinToken)
	stranger, err := agentkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id := c.Cluster.ID

	tests := []struct {
		name     string
		auth     func() string
		body     string
		wantCode int
		wantMsg  string
	}{
		{name: "no proof", auth: func() string { return "" }, body: `{}`, wantCode: 401, wantMsg: "agent authentication"},
		{name: "a bearer token is no proof", auth: func() string { return "Bearer " + c.Join.JoinToken }, body: `{}`, wantCode: 401, wantMsg: "Tether-Agent"},
		{name: "another key", auth: func() string { return f.proof(t, stranger, id) }, body: `{}`, wantCode: 401, wantMsg: "does not verify"},
		{name: "unknown cluster", auth: func() string { return f.proof(t, key, "/groups/prod/clusters/nope") }, body: `{}`, wantCode: 404, wantMsg: "not registered"},
		{name: "unknown field", auth: func() string { return f.proof(t, key, id) }, body: `{"agentVersion":"v1","nodes":3}`, wantCode: 400, wantMsg: "unknown field"},
		{name: "trailing data", auth: func() string { return f.proof(t, key, id) }, body: `{"nodeCount":1} {}`, wantCode: 400, wantMsg: "after the JSON"},
		{name: "not JSON", auth: func() string { return f.proof(t, key, id) }, body: `agentVersion=v1`, wantCode: 400, wantMsg: "nodeCount"},
		{name: "too large", auth: func() string { return f.proof(t, key, id) }, body: `{"lastError":"` + strings.Repeat("x", 20<<10) + `"}`, wantCode: 400, wantMsg: "longer than"},
		{name: "node count below -1", auth: func() string { return f.proof(t, key, id) }, body: `{"nodeCount":-2}`, wantCode: 400, wantMsg: "-1 when unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := f.report(t, tt.auth(), tt.body)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			if msg := statusMessage(t, body); !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("message %q does not mention %q", msg, tt.wantMsg)
			}
		})
	}
	want := statusOf{Status: StatusConnecting, NodeCount: -1}
	if diff := cmp.Diff(want, statusPart(f.show(t, "prod", "edge-1"))); diff != "" {
		t.Errorf("refused reports changed the cluster (-want +got):\n%s", diff)
	}

	t.Run("a report is stored and shown", func(t *testing.T) {
		proof := f.proof(t, key, id)
		code, body := f.report(t, proof, `{"agentVersion":"v1.2.3","kubernetesVersion":"v1.37.2","nodeCount":3}`)
		if code != http.StatusNoContent || len(body) != 0 {
			t.Fatalf("report: %d %s", code, body)
		}
		v := f.show(t, "prod", "edge-1")
		want := statusOf{Status: StatusConnecting, AgentVersion: "v1.2.3", KubernetesVersion: "v1.37.2", NodeCount: 3}
		if diff := cmp.Diff(want, statusPart(v)); diff != "" {
			t.Errorf("view (-want +got):\n%s", diff)
		}
		if !v.StatusReportedAt.Equal(f.clock().Truncate(time.Microsecond)) {
			t.Errorf("statusReportedAt %s, want the hub's clock %s", v.StatusReportedAt, f.clock())
		}
		// The same proof again is a replay.
		code, body = f.report(t, proof, `{"nodeCount":1}`)
		if code != 401 || !strings.Contains(statusMessage(t, body), "replayed") {
			t.Errorf("replayed proof: %d %s", code, body)
		}
	})

	t.Run("text is made to fit, not refused", func(t *testing.T) {
		lastError := strings.Repeat("é", 700) + "\nline two\x00"
		body, _ := json.Marshal(agent.StatusReport{AgentVersion: strings.Repeat("v", 200), NodeCount: -1, LastError: lastError})
		if code, b := f.report(t, f.proof(t, key, id), string(body)); code != http.StatusNoContent {
			t.Fatalf("report: %d %s", code, b)
		}
		v := f.show(t, "prod", "edge-1")
		want := statusOf{Status: StatusConnecting, AgentVersion: strings.Repeat("v", store.MaxVersionLen), NodeCount: -1,
			LastError: strings.Repeat("é", store.MaxLastErrorLen/2)}
		if diff := cmp.Diff(want, statusPart(v)); diff != "" {
			t.Errorf("view (-want +got):\n%s", diff)
		}
	})
}

func TestClipText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "v1.2.3", 10, "v1.2.3"},
		{"cut", "abcdef", 3, "abc"},
		{"cut before a split character", "aé", 2, "a"},
		{"control characters become spaces", "a\nb\tc\x00", 10, "a b c "},
		{"invalid UTF-8 is replaced", "a\xffb", 10, "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := clipText(tt.in, tt.max)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("clipText(%q, %d) (-want +got):\n%s", tt.in, tt.max, diff)
			}
			if !utf8.ValidString(got) || len(got) > tt.max {
				t.Errorf("clipText(%q, %d) = %q: not valid UTF-8 within the limit", tt.in, tt.max, got)
			}
		})
	}
}

// TestConnectivity follows a cluster through Connecting, Connected and
// Offline with a real agent, on the hub's clock.
func TestConnectivity(t *testing.T) {
	f := newFixtureConfig(t, func(c *Config) { c.HeartbeatInterval, c.OfflineAfter = time.Hour, 2*time.Hour })
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	dir := t.TempDir()
	type connectivity struct {
		Status    Connectivity
		Connected bool
	}
	status := func() connectivity {
		v := f.show(t, "prod", "edge-1")
		return connectivity{v.Status, v.Connected}
	}
	check := func(step string, want connectivity) {
		t.Helper()
		if diff := cmp.Diff(want, status()); diff != "" {
			t.Errorf("%s (-want +got):\n%s", step, diff)
		}
	}

	check("registered", connectivity{StatusConnecting, false})
	a := startAgent(t, f, api, c.Join.JoinToken, dir)
	waitConnected(t, f, c.Cluster.ID)
	check("agent up", connectivity{StatusConnected, true})

	if err := a.stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	poll(t, "the hub notices the tunnel closed", func() bool { return !status().Connected })
	check("agent stopped, within the window", connectivity{StatusConnected, false})
	f.advance(2*time.Hour + time.Second)
	check("window missed", connectivity{StatusOffline, false})

	// Back to the real time, which the agent's proofs carry.
	f.set(time.Now().UTC())
	a = startAgent(t, f, api, "", dir)
	defer a.stop()
	waitConnected(t, f, c.Cluster.ID)
	check("agent back", connectivity{StatusConnected, true})
}

// TestHeartbeats: while a tunnel is up, the hub records its heartbeat every
// HeartbeatInterval, on its clock, with the version its agent reported.
func TestHeartbeats(t *testing.T) {
	f := newFixtureConfig(t, func(c *Config) { c.HeartbeatInterval = 10 * time.Millisecond })
	c := f.createCluster(t, "prod", "edge-1")
	a := startAgent(t, f, newAPIServer(t), c.Join.JoinToken, t.TempDir())
	defer a.stop()
	waitConnected(t, f, c.Cluster.ID)
	for i := range 3 {
		later := f.clock().Add(time.Second)
		f.set(later)
		var got store.Agent
		poll(t, fmt.Sprintf("heartbeat %d at the hub's time", i), func() bool {
			cl, err := f.hub.cfg.Store.GetCluster(context.Background(), c.Cluster.ID)
			if err != nil {
				t.Fatal(err)
			}
			got = cl.Agent
			return got.LastSeenAt.Equal(later.Truncate(time.Microsecond))
		})
		if got.Version != "v-test" {
			t.Errorf("heartbeat %d: agent version %q, want %q", i, got.Version, "v-test")
		}
	}
}

// TestExpiredAgentKey: an agent unheard of for longer than the key's
// maximum idle time is Expired, refused at the tunnel and status
// endpoints, and exits; enrolling with a new join token brings it back.
func TestExpiredAgentKey(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	now := f.clock()
	f.set(now.Add(-100 * 24 * time.Hour))
	key, er := f.enrollKey(t, c.Join.JoinToken)
	if err := f.hub.cfg.Store.RecordHeartbeat(ctx, c.Cluster.ID, store.Heartbeat{AgentVersion: "v-old", At: now.Add(-95 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.set(now)

	if got := f.show(t, "prod", "edge-1").Status; got != StatusExpired {
		t.Errorf("status %s, want %s", got, StatusExpired)
	}
	msgs := []string{"expired after 95 days", "limit is 90 days", "tether cluster join-token -g prod -n edge-1", "enroll the agent again"}
	code, body := f.report(t, f.proof(t, key, c.Cluster.ID), `{"nodeCount":1}`)
	if code != http.StatusForbidden {
		t.Fatalf("status report of an expired key: %d %s", code, body)
	}
	for _, m := range msgs {
		if msg := statusMessage(t, body); !strings.Contains(msg, m) {
			t.Errorf("refusal %q does not mention %q", msg, m)
		}
	}

	dir := t.TempDir()
	writeAgentState(t, dir, key, er)
	err := startAgent(t, f, api, "", dir).exited(t)
	if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), msgs[0]) {
		t.Errorf("agent with an expired key: %v, want a refusal saying its key expired", err)
	}
	wantStatus(t, f, "GET", "/k8s/prod/edge-1/api", "sa-token", nil, http.StatusServiceUnavailable, msgs...)

	// A new join token enrolls a new key: the cluster is Connecting again.
	join := must[JoinTokenView](t, f, "POST", "/api/v1/groups/prod/clusters/edge-1/join-tokens", adminToken, nil, http.StatusCreated)
	f.enrollKey(t, join.JoinToken)
	if got := f.show(t, "prod", "edge-1").Status; got != StatusConnecting {
		t.Errorf("status after enrolling again %s, want %s", got, StatusConnecting)
	}
}

func TestDeleteCluster(t *testing.T) {
	f := newFixture(t)
	api := newAPIServer(t)
	c := f.createCluster(t, "prod", "edge-1")
	other := f.createCluster(t, "prod", "edge-2")
	dir := t.TempDir()
	a := startAgent(t, f, api, c.Join.JoinToken, dir)
	defer a.stop()
	waitConnected(t, f, c.Cluster.ID)
	spare := must[JoinTokenView](t, f, "POST", "/api/v1/groups/prod/clusters/edge-1/join-tokens", adminToken, nil, http.StatusCreated)

	checkRefusals(t, f, []refusal{
		{name: "unknown cluster", method: "DELETE", path: "/api/v1/groups/prod/clusters/nope", code: 404, msg: `no cluster "nope" in group "prod"`},
		{name: "invalid name", method: "DELETE", path: "/api/v1/groups/prod/clusters/Edge_1", code: 404, msg: "no cluster"},
	})
	wantStatus(t, f, "DELETE", "/api/v1/groups/prod/clusters/edge-1", "", nil, 401, "admin token")

	must[struct{}](t, f, "DELETE", "/api/v1/groups/prod/clusters/edge-1", adminToken, nil, http.StatusNoContent)
	// Its live tunnel closes, and the agent, refused, exits.
	err := a.exited(t)
	if !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), "not registered on this hub") {
		t.Errorf("agent of a deleted cluster: %v, want a refusal saying the cluster is not registered", err)
	}
	if f.hub.lookup(c.Cluster.ID) != nil {
		t.Error("the hub still holds the deleted cluster's tunnel")
	}
	checkRefusals(t, f, []refusal{
		{name: "gone", method: "GET", path: "/api/v1/groups/prod/clusters/edge-1", code: 404, msg: "no cluster"},
		{name: "deleted twice", method: "DELETE", path: "/api/v1/groups/prod/clusters/edge-1", code: 404, msg: "no cluster"},
	})
	code, body := f.report(t, f.proof(t, readAgentKey(t, dir), c.Cluster.ID), `{"nodeCount":1}`)
	if code != http.StatusNotFound || !strings.Contains(statusMessage(t, body), "not registered") {
		t.Errorf("status report of a deleted cluster's agent: %d %s", code, body)
	}
	// Its join tokens went with it, even under a cluster of the same name.
	f.createCluster(t, "prod", "edge-1")
	key := agent.EnrollRequest{PublicKey: strings.Repeat("A", 43) + "="}
	if code, body := f.call(t, "POST", enrollPath, spare.JoinToken, key); code != http.StatusUnauthorized {
		t.Errorf("enrolling with a deleted cluster's join token: %d %s, want 401", code, body)
	}
	if got := f.show(t, "prod", "edge-2"); got.ID != other.Cluster.ID {
		t.Errorf("another cluster changed: %+v", got)
	}
}

// TestRevokedElsewhere: a cluster deleted, or its agent enrolled anew,
// through another replica (here, straight in the store) loses its tunnel at
// this replica's next heartbeat, and the old agent is refused and exits.
func TestRevokedElsewhere(t *testing.T) {
	tests := []struct {
		name    string
		revoke  func(t *testing.T, f *fixture, c CreatedCluster)
		wantMsg string
	}{
		{
			name: "deleted",
			revoke: func(t *testing.T, f *fixture, c CreatedCluster) {
				if err := f.hub.cfg.Store.DeleteCluster(context.Background(), c.Cluster.ID); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "not registered on this hub",
		},
		{
			name: "enrolled anew",
			revoke: func(t *testing.T, f *fixture, c CreatedCluster) {
				join := must[JoinTokenView](t, f, "POST", "/api/v1/groups/prod/clusters/edge-1/join-tokens", adminToken, nil, http.StatusCreated)
				f.enrollKey(t, join.JoinToken)
			},
			wantMsg: "does not verify",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureConfig(t, func(c *Config) { c.HeartbeatInterval = 10 * time.Millisecond })
			c := f.createCluster(t, "prod", "edge-1")
			a := startAgent(t, f, newAPIServer(t), c.Join.JoinToken, t.TempDir())
			defer a.stop()
			waitConnected(t, f, c.Cluster.ID)
			tt.revoke(t, f, c)
			if err := a.exited(t); !errors.Is(err, agent.ErrRefused) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("agent: %v, want a refusal mentioning %q", err, tt.wantMsg)
			}
			poll(t, "the hub forgets the tunnel", func() bool { return f.hub.lookup(c.Cluster.ID) == nil })
		})
	}
}

func TestLocations(t *testing.T) {
	f := newFixtureConfig(t, func(c *Config) {
		c.Locations = []Location{
			{Name: "East US 2", URL: "https://eastus2.hub.example.com", Endpoints: []string{"eastus2.hub.example.com:443", "eastus2-relay.hub.example.com:443"}},
			{Name: "West Europe", URL: "https://westeurope.hub.example.com:8443/tether/"},
		}
	})
	east := LocationView{ID: "eastus2", Name: "East US 2", URL: "https://eastus2.hub.example.com",
		Endpoints: []string{"eastus2.hub.example.com:443", "eastus2-relay.hub.example.com:443"}}
	west := LocationView{ID: "westeurope", Name: "West Europe", URL: "https://westeurope.hub.example.com:8443/tether",
		Endpoints: []string{"westeurope.hub.example.com:8443"}}

	// Anyone may read them: no token.
	if diff := cmp.Diff([]LocationView{east, west}, must[[]LocationView](t, f, "GET", "/api/v1/locations", "", nil, 200)); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	for _, name := range []string{"East%20US%202", "eastus2", "EASTUS2", "east%20us2"} {
		t.Run("show "+name, func(t *testing.T) {
			if diff := cmp.Diff(east, must[LocationView](t, f, "GET", "/api/v1/locations/"+name, "", nil, 200)); diff != "" {
				t.Errorf("show (-want +got):\n%s", diff)
			}
		})
	}
	wantStatus(t, f, "GET", "/api/v1/locations/Mars", "", nil, 404, `no location "Mars"`, "eastus2, westeurope")

	tests := []struct {
		name, location, want string
	}{
		{"by name", "West Europe", "westeurope"},
		{"by ID", "eastus2", "eastus2"},
		{"none: the first", "", "eastus2"},
	}
	for i, tt := range tests {
		t.Run("create "+tt.name, func(t *testing.T) {
			name := []string{"a", "b", "c"}[i]
			got := must[CreatedCluster](t, f, "POST", "/api/v1/clusters", adminToken, ClusterRequest{Group: "prod", Name: name, Location: tt.location}, 201)
			if got.Cluster.Location != tt.want {
				t.Errorf("location %q, want %q", got.Cluster.Location, tt.want)
			}
		})
	}
	wantStatus(t, f, "POST", "/api/v1/clusters", adminToken, ClusterRequest{Group: "prod", Name: "d", Location: "Mars"}, 400,
		`location "Mars" is not one of this hub's: eastus2, westeurope`)

	t.Run("enrollment answers with the location's URL", func(t *testing.T) {
		join := must[JoinTokenView](t, f, "POST", "/api/v1/groups/prod/clusters/a/join-tokens", adminToken, nil, http.StatusCreated)
		if _, er := f.enrollKey(t, join.JoinToken); er.TunnelURL != west.URL {
			t.Errorf("tunnelURL %q, want %q", er.TunnelURL, west.URL)
		}
	})
}

func TestNewLocations(t *testing.T) {
	tests := []struct {
		name    string
		in      []Location
		want    []LocationView
		wantErr string
	}{
		{name: "none: local", want: []LocationView{{ID: "local", Name: "local", Endpoints: []string{}}}},
		{name: "default endpoint", in: []Location{{Name: "Frankfurt DC-2", URL: "https://fra.example.com/"}},
			want: []LocationView{{ID: "frankfurtdc-2", Name: "Frankfurt DC-2", URL: "https://fra.example.com", Endpoints: []string{"fra.example.com:443"}}}},
		{name: "IPv6 endpoint", in: []Location{{Name: "lab", URL: "https://[::1]:8443"}},
			want: []LocationView{{ID: "lab", Name: "lab", URL: "https://[::1]:8443", Endpoints: []string{"[::1]:8443"}}}},
		{name: "same ID", in: []Location{{Name: "East US 2", URL: "https://a.example.com"}, {Name: "eastus 2", URL: "https://b.example.com"}}, wantErr: `same ID "eastus2"`},
		{name: "no name", in: []Location{{URL: "https://a.example.com"}}, wantErr: "location name"},
		{name: "slash in name", in: []Location{{Name: "east/us", URL: "https://a.example.com"}}, wantErr: "letters, digits"},
		{name: "http URL", in: []Location{{Name: "east", URL: "http://a.example.com"}}, wantErr: "want https://"},
		{name: "no URL", in: []Location{{Name: "east"}}, wantErr: "want https://"},
		{name: "endpoint without port", in: []Location{{Name: "east", URL: "https://a.example.com", Endpoints: []string{"a.example.com"}}}, wantErr: "HOST:PORT"},
		{name: "endpoint port 0", in: []Location{{Name: "east", URL: "https://a.example.com", Endpoints: []string{"a.example.com:0"}}}, wantErr: "1 to 65535"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := newLocations(tt.in)
			if diff := cmp.Diff(tt.wantErr, errText(err, tt.wantErr)); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("locations (-want +got):\n%s", diff)
			}
		})
	}
}

// errText is want when err's message contains it, else err's message ("" for nil).
func errText(err error, want string) string {
	switch {
	case err == nil:
		return ""
	case want != "" && strings.Contains(err.Error(), want):
		return want
	}
	return err.Error()
}

func TestConfigDurations(t *testing.T) {
	tests := []struct {
		name                        string
		heartbeat, offline, maxIdle time.Duration
		wantOffline, wantMaxIdle    time.Duration
		wantErr                     string
	}{
		{name: "defaults", wantOffline: 90 * time.Second, wantMaxIdle: 90 * 24 * time.Hour},
		{name: "three heartbeats", heartbeat: time.Second, wantOffline: 3 * time.Second, wantMaxIdle: 90 * 24 * time.Hour},
		{name: "explicit", heartbeat: time.Second, offline: 2 * time.Second, maxIdle: time.Hour, wantOffline: 2 * time.Second, wantMaxIdle: time.Hour},
		{name: "window shorter than a heartbeat", heartbeat: time.Minute, offline: time.Second, wantErr: "shorter than the heartbeat interval"},
		{name: "key idle within the window", offline: time.Hour, maxIdle: time.Hour, wantErr: "must be longer than the offline window"},
		{name: "negative heartbeat", heartbeat: -time.Second, wantErr: "want a positive duration"},
	}
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := New(Config{Store: nopStore{}, AdminTokenHash: HashToken("x"), HubID: "h", AssertionKey: key, Replica: "r",
				HeartbeatInterval: tt.heartbeat, OfflineAfter: tt.offline, AgentKeyMaxIdle: tt.maxIdle}, nil)
			if diff := cmp.Diff(tt.wantErr, errText(err, tt.wantErr)); diff != "" {
				t.Fatalf("error (-want +got):\n%s", diff)
			}
			var got [2]time.Duration
			if h != nil {
				got = [2]time.Duration{h.cfg.OfflineAfter, h.cfg.AgentKeyMaxIdle}
			}
			if diff := cmp.Diff([2]time.Duration{tt.wantOffline, tt.wantMaxIdle}, got); diff != "" {
				t.Errorf("offline window and key idle time (-want +got):\n%s", diff)
			}
		})
	}
}

// nopStore is a store New accepts; the tests that use it make no request.
type nopStore struct{ store.Store }

func TestVersionEndpoint(t *testing.T) {
	f := newFixtureConfig(t, func(c *Config) { c.Version = "v1.2.3" })
	got := must[VersionInfo](t, f, "GET", "/api/v1/version", "", nil, 200)
	if diff := cmp.Diff(VersionInfo{HubVersion: "v1.2.3"}, got); diff != "" {
		t.Errorf("version (-want +got):\n%s", diff)
	}
}
