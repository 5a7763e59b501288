package hub

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
)

// replicaSet is several hubs serving on loopback, sharing one store (the
// in-process watcher of one SQLite store stands in for PostgreSQL's
// notifications here; test/e2e runs replicas as processes on PostgreSQL).
type replicaSet struct {
	store  store.Store
	cert   tls.Certificate
	client *http.Client
	hubs   map[string]*replica
}

type replica struct {
	hub    *Hub
	url    string
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func newReplicaSet(t testing.TB, names ...string) *replicaSet {
	t.Helper()
	return newReplicaSetWith(t, func(*Config) {}, names...)
}

// newReplicaSetWith is newReplicaSet with each replica's Config changed by
// edit.
func newReplicaSetWith(t testing.TB, edit func(*Config), names ...string) *replicaSet {
	t.Helper()
	return newReplicaSetLogged(t, edit, slog.New(slog.DiscardHandler), names...)
}

// newReplicaSetLogged is newReplicaSetWith with each replica logging to
// logger, with its name as "replica".
func newReplicaSetLogged(t testing.TB, edit func(*Config), logger *slog.Logger, names ...string) *replicaSet {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cert := selfSigned(t)
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	clientTLS := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	rs := &replicaSet{store: st, cert: cert, hubs: map[string]*replica{},
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS}, Timeout: 20 * time.Second}}
	t.Cleanup(rs.client.CloseIdleConnections)
	for _, name := range names {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		u := "https://" + l.Addr().String()
		cfg := Config{Store: st, AdminTokenHash: HashToken(adminToken), HubID: "test-hub", AssertionKey: key,
			Replica: name, PeerURL: u, PeerTLS: clientTLS, ReplicaLease: 600 * time.Millisecond, RouteWait: 2 * time.Second,
			DrainDelay: 100 * time.Millisecond, DrainGrace: 2 * time.Second}
		edit(&cfg)
		h, err := New(cfg, logger.With("replica", name))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		r := &replica{hub: h, url: u, cancel: cancel, done: make(chan error, 1)}
		go func() { r.done <- h.Serve(ctx, l, &tls.Config{Certificates: []tls.Certificate{cert}}) }()
		rs.hubs[name] = r
		t.Cleanup(func() { r.stop(t) })
	}
	return rs
}

// stop drains the replica and waits for Serve to return.
func (r *replica) stop(t testing.TB) {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("a replica did not stop within 20 s")
		}
	})
}

func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hub"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// do sends a request to one replica and returns the status, the body and
// the Retry-After header.
func (rs *replicaSet) do(t testing.TB, replica, method, path string, header http.Header) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(method, rs.hubs[replica].url+path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("Retry-After")
}

// createCluster registers a cluster through the replica.
func (rs *replicaSet) createCluster(t testing.TB, replica, group, name string) CreatedCluster {
	t.Helper()
	req, _ := http.NewRequest("POST", rs.hubs[replica].url+"/api/v1/clusters", strings.NewReader(fmt.Sprintf(`{"group":%q,"name":%q}`, group, name)))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var created CreatedCluster
	json.NewDecoder(resp.Body).Decode(&created)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create cluster: %d", resp.StatusCode)
	}
	return created
}

// runAgent runs a real agent that dials only the replica, in front of
// apiServer, until the test ends.
func (rs *replicaSet) runAgent(t testing.TB, replica, joinToken string, apiServer *rest.Config) {
	t.Helper()
	hubURL, _ := url.Parse(rs.hubs[replica].url)
	ag, err := agent.New(agent.Config{Hub: hubURL, HubClient: rs.client, JoinToken: joinToken, StateDir: t.TempDir(),
		APIServer: apiServer, Version: "v-test", MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
}

func TestReplicasForward(t *testing.T) {
	rs := newReplicaSet(t, "a", "b")
	api := newAPIServer(t)

	created := rs.createCluster(t, "a", "g1", "c1")
	rs.runAgent(t, "a", created.Join.JoinToken, api.restConfig()) // the agent dials replica a only
	poll(t, "replica b learns that a holds the tunnel", func() bool {
		rt := rs.hubs["b"].hub.rt.lookup(created.Cluster.ID, time.Now(), time.Second)
		return rt.peer == "a"
	})

	sa := http.Header{"Authorization": {"Bearer sa-token"}}
	code, body, _ := rs.do(t, "b", "GET", "/k8s/g1/c1/api/v1/namespaces?limit=1", sa)
	if code != http.StatusOK || !strings.Contains(body, `"path":"/api/v1/namespaces?limit=1"`) || !strings.Contains(body, `"authorization":"Bearer sa-token"`) {
		t.Fatalf("through replica b: %d %s", code, body)
	}

	// A client cannot pass for a replica.
	forged := http.Header{"Authorization": {"Bearer sa-token"}, headerPeer: {"a;" + "1;AAAA"}}
	if code, body, _ := rs.do(t, "a", "GET", "/k8s/g1/c1/api", forged); code != http.StatusUnauthorized || !strings.Contains(body, headerPeer) {
		t.Errorf("forged replica proof: %d %s, want 401 naming the header", code, body)
	}
	// A real proof that is too old is refused too.
	old := http.Header{"Authorization": {"Bearer sa-token"}, headerPeer: {rs.hubs["b"].hub.peerProof(time.Now().Add(-2 * time.Minute))}}
	if code, _, _ := rs.do(t, "a", "GET", "/k8s/g1/c1/api", old); code != http.StatusUnauthorized {
		t.Errorf("stale replica proof: %d, want 401", code)
	}

	// The holder drains: its routes go, the agent (which knows only a)
	// cannot follow, and b answers "not connected" after waiting for it.
	rs.hubs["a"].stop(t)
	poll(t, "replica a gives up its routes", func() bool {
		c, err := rs.store.GetCluster(context.Background(), created.Cluster.ID)
		return err == nil && c.Tunnel.Replica == ""
	})
	replicas, err := rs.store.ListReplicas(context.Background(), time.Now())
	if err != nil || len(replicas) != 1 || replicas[0].Name != "b" {
		t.Errorf("replicas after a drained: %+v, %v; want only b", replicas, err)
	}
	start := time.Now()
	code, body, _ = rs.do(t, "b", "GET", "/k8s/g1/c1/api", sa)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not connected") {
		t.Errorf("after the holder drained: %d %s, want 503 not connected", code, body)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("b waited %s for a route, more than RouteWait and then some", waited)
	}
}

func TestDrainEndsWatchesWithAReason(t *testing.T) {
	rs := newReplicaSet(t, "a")
	// An API server whose watches send one event and then wait.
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("watch") != "true" {
			fmt.Fprintln(w, `{}`)
			return
		}
		fmt.Fprintln(w, `{"type":"ADDED","object":{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"one"}}}`)
		http.NewResponseController(w).Flush()
		<-r.Context().Done()
	}))
	defer api.Close()
	apiCfg := &rest.Config{Host: api.URL, TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: api.Certificate().Raw})}}

	created := rs.createCluster(t, "a", "g1", "c1")
	rs.runAgent(t, "a", created.Join.JoinToken, apiCfg)
	poll(t, "the agent connects", func() bool { return rs.hubs["a"].hub.lookup(created.Cluster.ID) != nil })

	req, _ := http.NewRequest("GET", rs.hubs["a"].url+"/k8s/g1/c1/api/v1/namespaces?watch=true", nil)
	req.Header.Set("Authorization", "Bearer sa-token")
	resp, err := rs.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() || !strings.Contains(lines.Text(), `"ADDED"`) {
		t.Fatalf("first watch event: %q", lines.Text())
	}
	go rs.hubs["a"].stop(t)
	if !lines.Scan() {
		t.Fatalf("the watch ended without a reason: %v", lines.Err())
	}
	var ev struct {
		Type   string
		Object struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal(lines.Bytes(), &ev); err != nil || ev.Type != "ERROR" || ev.Object.Code != http.StatusServiceUnavailable ||
		!strings.Contains(ev.Object.Message, "shutting down") {
		t.Errorf("last watch event %s (%v): want an ERROR event with a 503 Status saying the replica is shutting down", lines.Bytes(), err)
	}
}

// BenchmarkForward compares a small request served by the replica holding
// the tunnel with the same request sent to another replica, which forwards
// it: the cost of the extra hop.
func BenchmarkForward(b *testing.B) {
	rs := newReplicaSet(b, "a", "b")
	api := newAPIServer(b)
	created := rs.createCluster(b, "a", "g1", "c1")
	rs.runAgent(b, "a", created.Join.JoinToken, api.restConfig())
	deadline := time.Now().Add(10 * time.Second)
	for rs.hubs["b"].hub.rt.lookup(created.Cluster.ID, time.Now(), time.Second).peer != "a" {
		if time.Now().After(deadline) {
			b.Fatal("replica b never learned the route")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sa := http.Header{"Authorization": {"Bearer sa-token"}}
	for _, via := range []string{"a", "b"} {
		name := map[string]string{"a": "holder", "b": "forwarded"}[via]
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if code, body, _ := rs.do(b, via, "GET", "/k8s/g1/c1/api", sa); code != http.StatusOK {
					b.Fatalf("%d %s", code, body)
				}
			}
		})
	}
}
