package hub

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
	"tether.dev/tether/internal/tunnel"
)

// received is one request as an agent received it through its tunnel.
type received struct {
	cluster   string // the cluster whose agent received it
	method    string
	path      string // as the agent's server decoded it
	rawQuery  string
	assertion string
	header    http.Header
}

// gatewayFuzz is a hub whose clusters are held by agents that record what
// reaches them, over real tunnels.
type gatewayFuzz struct {
	hub      *Hub
	verifier *identity.AssertionVerifier

	mu   sync.Mutex // guards seen
	seen []received
}

// fuzzClusters are the clusters the gateway fuzz hub holds tunnels for.
var fuzzClusters = []string{
	store.ClusterID("g", "c"),
	store.ClusterID("g", "c2"),
	store.ClusterID("g2", "c"),
}

func newGatewayFuzz(f *testing.F) *gatewayFuzz {
	st, err := sqlite.Open(context.Background(), filepath.Join(f.TempDir(), "hub.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	h, err := New(Config{Store: st, AdminTokenHash: HashToken(adminToken), HubID: "fuzz-hub", AssertionKey: key, Replica: "fuzz"}, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	v, err := identity.NewAssertionVerifier("fuzz-hub", h.signer.PublicKey())
	if err != nil {
		f.Fatal(err)
	}
	g := &gatewayFuzz{hub: h, verifier: v}

	accepted := make(chan *tunnel.Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := tunnel.Accept(w, r, tunnel.Config{})
		if err != nil {
			return
		}
		accepted <- s
	}))
	f.Cleanup(srv.Close)
	var wg sync.WaitGroup
	for _, id := range fuzzClusters {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		agentSess, err := tunnel.Dial(ctx, tunnel.DialConfig{URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/tunnel"})
		cancel()
		if err != nil {
			f.Fatal(err)
		}
		hubSess := <-accepted
		agentSrv := &http.Server{Handler: g.agent(id)}
		wg.Go(func() { _ = agentSrv.Serve(agentSess) })
		f.Cleanup(func() {
			_ = agentSrv.Close()
			_ = agentSess.Close()
		})
		h.mu.Lock()
		h.tunnels[id] = &agentConn{cluster: id, sess: hubSess, gw: newClusterGateway(id, hubSess, h.metrics, h.logger), connected: time.Now()}
		h.mu.Unlock()
	}
	f.Cleanup(func() {
		h.mu.Lock()
		for _, c := range h.tunnels {
			c.gw.close()
		}
		h.mu.Unlock()
		h.closeAll()
		wg.Wait()
	})
	return g
}

// agent is the handler of cluster id's agent: it records the request.
func (g *gatewayFuzz) agent(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		g.seen = append(g.seen, received{
			cluster: id, method: r.Method, path: r.URL.Path, rawQuery: r.URL.RawQuery,
			assertion: r.Header.Get(identity.AssertionHeader), header: r.Header.Clone(),
		})
		g.mu.Unlock()
		_, _ = w.Write([]byte("ok"))
	})
}

func (g *gatewayFuzz) take() []received {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := g.seen
	g.seen = nil
	return seen
}

// FuzzGatewayPath sends any request line, as the hub's server would parse
// it, through the hub's real routes and gateway to agents over real
// tunnels. A request reaches at most one agent: the one of the cluster its
// path names, /k8s/{group}/{cluster}, with a hub assertion for that cluster
// alone. The agent receives exactly the request's path with that prefix
// removed (or "/"), and the query unchanged; the path has no "." or ".."
// segment, so it cannot climb out of wherever the agent roots it, and no
// Impersonate-* header gets through.
func FuzzGatewayPath(f *testing.F) {
	for _, seed := range []struct{ method, target string }{
		{"GET", "/k8s/g/c/api/v1/namespaces/default/pods?watch=1&resourceVersion=5"},
		{"GET", "/k8s/g/c"},
		{"GET", "/k8s/g/c/"},
		{"POST", "/k8s/g/c2/apis/apps/v1/namespaces/a%2Fb/deployments"},
		{"GET", "/k8s/g2/c/api/v1/namespaces/kube-system/secrets"},
		{"GET", "/k8s/g/c/../c2/api"},
		{"GET", "/k8s/g/%63/api"},
		{"GET", "/k8s/g/c%2Fapi"},
		{"GET", "/k8s/g/c/api/%2e%2e/%2e%2e/c2"},
		{"GET", "/k8s/g/c//api"},
		{"CONNECT", "/k8s/g/c/../../g2/c/api"},
		{"GET", "http://evil.example/k8s/g/c/api"},
		{"GET", "/k8s/G/c/api"},
		{"GET", "/k8s/g/nope/api"},
		{"OPTIONS", "*"},
		{"PATCH", "/k8s/g/c/api?%zz"},
	} {
		f.Add(seed.method, seed.target)
	}
	g := newGatewayFuzz(f)
	handler := g.hub.Handler()

	f.Fuzz(func(t *testing.T, method, target string) {
		raw := method + " " + target + " HTTP/1.1\r\nHost: hub.example\r\nAuthorization: Bearer sa-token\r\n" +
			"Impersonate-User: admin\r\nImpersonate-Group: system:masters\r\n\r\n"
		if strings.ContainsAny(method+target, " \r\n") {
			return
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the hub's server would refuse it before any handler
		}
		r.RemoteAddr = "192.0.2.1:4711"
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		r = r.WithContext(ctx)
		in := *r.URL
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r)

		seen := g.take()
		if len(seen) > 1 {
			t.Fatalf("one request reached %d agents: %+v", len(seen), seen)
		}
		if len(seen) == 0 {
			return
		}
		got := seen[0]
		group, name, err := store.ParseClusterID(got.cluster)
		if err != nil {
			t.Fatal(err)
		}
		prefix := "/k8s/" + group + "/" + name
		rest, ok := strings.CutPrefix(in.Path, prefix)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			t.Fatalf("%s %q (path %q) reached the agent of %s", method, target, in.Path, got.cluster)
		}
		if rest == "" {
			rest = "/"
		}
		// httputil.ReverseProxy re-encodes a query it cannot parse, dropping
		// what it cannot (so that proxies never disagree on parameters).
		query := in.RawQuery
		if v, err := url.ParseQuery(query); err != nil {
			query = v.Encode()
		}
		if got.path != rest || got.rawQuery != query || got.method != r.Method {
			t.Fatalf("%s %q: the agent of %s received %s %q ?%q, want %s %q ?%q", method, target, got.cluster, got.method, got.path, got.rawQuery, r.Method, rest, query)
		}
		for seg := range strings.SplitSeq(got.path, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%s %q: the agent of %s received the path %q, with a dot segment (cleaned under its prefix: %q)", method, target, got.cluster, got.path, path.Clean(prefix+got.path))
			}
		}
		a, err := g.verifier.Verify(got.assertion, got.cluster, time.Now())
		if err != nil || a.Cluster != got.cluster {
			t.Fatalf("%s %q: the agent of %s received an assertion for %q: %v", method, target, got.cluster, a.Cluster, err)
		}
		for k := range got.header {
			if strings.HasPrefix(k, "Impersonate-") {
				t.Fatalf("%s %q: %s reached the agent", method, target, k)
			}
		}
	})
}

// FuzzPeerProof: a Tether-Peer header comes from anyone who can reach the
// hub. checkPeerProof accepts only a fresh proof signed with this hub's
// replica key, and the replica it returns is the one the MAC covers.
func FuzzPeerProof(f *testing.F) {
	h := &Hub{cfg: Config{Replica: "hub-0"}, peerKey: peerKeyFor(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))}
	otherKey := make([]byte, ed25519.SeedSize)
	otherKey[0] = 1
	other := &Hub{cfg: Config{Replica: "hub-0"}, peerKey: peerKeyFor(ed25519.NewKeyFromSeed(otherKey))}
	now := time.Unix(1_800_000_000, 0)
	for _, s := range []string{
		h.peerProof(now), h.peerProof(now.Add(-2 * time.Minute)), h.peerProof(now.Add(time.Hour)), other.peerProof(now),
		"hub-0;1800000000;", "hub-0;1800000000", ";;", "", ";", "a;b;c;d",
		"hub-0;+1800000000;" + strings.Repeat("A", 43), "hub-0;1800000000;" + strings.Repeat("=", 44),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, proof string) {
		name, err := h.checkPeerProof(proof, now)
		if err != nil {
			return
		}
		i := strings.LastIndexByte(proof, ';')
		msg := proof[:i]
		got, err := base64.RawURLEncoding.DecodeString(proof[i+1:])
		m := hmac.New(sha256.New, h.peerKey)
		m.Write([]byte(msg))
		if err != nil || !hmac.Equal(got, m.Sum(nil)) {
			t.Fatalf("accepted %q, whose MAC is not this hub's", proof)
		}
		ts, ok := strings.CutPrefix(msg, name+";")
		sec, err := strconv.ParseInt(ts, 10, 64)
		if !ok || err != nil || now.Sub(time.Unix(sec, 0)).Abs() > peerProofMaxAge {
			t.Fatalf("accepted %q as from replica %q", proof, name)
		}
	})
}
