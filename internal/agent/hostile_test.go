package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/rest"

	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/tunnel"
)

// recordingAPIServer is an API server stand-in that keeps every header of
// every request for /api/v1/pods it gets (the agent's own probes ask for
// other paths).
type recordingAPIServer struct {
	mu   sync.Mutex // guards seen
	seen []http.Header
}

// newRecordingAPIServer starts one, with the agent's view of it.
func newRecordingAPIServer(t *testing.T) (*recordingAPIServer, *rest.Config) {
	t.Helper()
	api := &recordingAPIServer{}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	return api, &rest.Config{
		Host:            srv.URL,
		BearerToken:     "the-agent's-own-token",
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})},
	}
}

func (s *recordingAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/api/v1/pods" {
		s.mu.Lock()
		s.seen = append(s.seen, r.Header.Clone())
		s.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
}

func (s *recordingAPIServer) requests() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.seen...)
}

// TestHostileHeadersAtAgent: whatever a client adds, the API server gets
// from the agent only the identity the hub vouched for: in token mode the
// one bearer token the agent checked, in the form the API server reads,
// and none of the headers it would take a client's identity or address
// from (its audit log records X-Forwarded-For and X-Real-Ip as the source).
func TestHostileHeadersAtAgent(t *testing.T) {
	api, cfg := newRecordingAPIServer(t)
	p, err := newAPIProxy(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	signer, verifier := hubKeys(t)
	front := httptest.NewServer(p.forCluster(testCluster, verifier))
	t.Cleanup(front.Close)
	tokenMode, err := signer.Sign(identity.Assertion{Cluster: testCluster, Mode: identity.ModeToken}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// Headers the API server must not see from a client, in any casing.
	banned := []string{"Impersonate-", "X-Remote-", "X-Forwarded-", "X-Real-Ip", "Forwarded", identity.AssertionHeader}
	tests := []struct {
		name string
		// raw header lines after the assertion's
		lines    []string
		wantAuth []string // the Authorization values the API server gets
	}{
		{name: "X-Real-Ip would be the audit log's source address", lines: []string{"Authorization: Bearer sa", "X-Real-Ip: 203.0.113.7"},
			wantAuth: []string{"Bearer sa"}},
		{name: "x-real-ip lower case", lines: []string{"Authorization: Bearer sa", "x-real-ip: 203.0.113.7"}, wantAuth: []string{"Bearer sa"}},
		{name: "front-proxy identity headers", lines: []string{"Authorization: Bearer sa", "X-Remote-User: admin", "x-remote-group: system:masters",
			"X-REMOTE-EXTRA-SCOPES: all", "X-Remote-Uid: 0"}, wantAuth: []string{"Bearer sa"}},
		{name: "forwarding headers", lines: []string{"Authorization: Bearer sa", "X-Forwarded-For: 203.0.113.7", "x-forwarded-host: evil",
			"X-Forwarded-Proto: http", "Forwarded: for=203.0.113.7"}, wantAuth: []string{"Bearer sa"}},
		{name: "two spaces before the token: not an anonymous request", lines: []string{"Authorization: Bearer  sa"}, wantAuth: []string{"Bearer sa"}},
		{name: "lower-case scheme", lines: []string{"Authorization: bearer sa"}, wantAuth: []string{"Bearer sa"}},
		{name: "a second Authorization header is dropped", lines: []string{"Authorization: Bearer sa", "Authorization: Bearer other"},
			wantAuth: []string{"Bearer sa"}},
		{name: "impersonation in every casing", lines: []string{"Authorization: Bearer sa", "impersonate-user: admin", "IMPERSONATE-GROUP: system:masters",
			"Impersonate-Uid: 0", "Impersonate-Extra-Scopes: all"}, wantAuth: []string{"Bearer sa"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(api.requests())
			c, err := net.Dial("tcp", front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			raw := "GET /api/v1/pods HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n" + identity.AssertionHeader + ": " + tokenMode + "\r\n" +
				strings.Join(tt.lines, "\r\n") + "\r\n\r\n"
			if _, err := io.WriteString(c, raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s, want 200", resp.StatusCode, body)
			}
			seen := api.requests()
			if len(seen) != before+1 {
				t.Fatalf("the API server got %d requests, want 1", len(seen)-before)
			}
			got := seen[len(seen)-1]
			if diff := cmp.Diff(tt.wantAuth, got.Values("Authorization")); diff != "" {
				t.Errorf("Authorization at the API server (-want +got):\n%s", diff)
			}
			for name := range got {
				for _, b := range banned {
					if strings.HasPrefix(http.CanonicalHeaderKey(name), b) {
						t.Errorf("the API server got %s: %q", name, got.Values(name))
					}
				}
			}
		})
	}
}

// TestHubImpostor: a server at the hub's name with a certificate of
// another CA. The agent dials the name it enrolled at; a DNS or routing
// hijack sends it to the impostor.
//
//   - trusting only the hub's CA (--hub-ca, which the chart and cluster
//     connect set for a hub with its own CA), the agent refuses the
//     impostor's certificate: it never sends it its proof;
//   - trusting a CA pool that also vouches for the impostor (the system
//     roots, when --hub-ca is not given, and a CA there misissued), the
//     agent refuses the impostor all the same: its chain has none of the
//     keys the hub presented at enrollment (pin.go), so the handshake
//     fails and the impostor never sees the proof it could replay;
//   - with a transport the agent cannot pin (not an *http.Transport), the
//     handshake succeeds, but the agent forwards no request the impostor
//     sends: only assertions signed with the hub key it learned at
//     enrollment pass, and nothing reaches the API server.
func TestHubImpostor(t *testing.T) {
	api, apiCfg := newRecordingAPIServer(t)

	hub := newTestHub(t, "tjt_one")
	impostor := newImpostor(t)
	hubPool := x509.NewCertPool()
	hubPool.AddCert(hub.srv.Certificate())
	bothPool := hubPool.Clone()
	bothPool.AddCert(impostor.ca)

	// hijack sends every connection meant for the hub to the impostor.
	var hijack atomic.Bool
	client := func(roots *x509.CertPool) *http.Client {
		tr := &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots},
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if hijack.Load() {
					addr = impostor.srv.Listener.Addr().String()
				}
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
		}
		t.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	state := t.TempDir()
	cfg := Config{Hub: hub.url(), JoinToken: "tjt_one", StateDir: state, APIServer: apiCfg,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CheckInterval: time.Hour, StatusInterval: time.Hour}

	// Enrolled at the real hub, through the pool that trusts both.
	cfg.HubClient = client(bothPool)
	_, stop := runAgent(t, cfg, nil)
	hub.waitFor("the agent's tunnel", func() bool { return len(hub.sessions) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	hijack.Store(true)

	t.Run("trusting only the hub's CA: the impostor's certificate is refused", func(t *testing.T) {
		logs := &syncBuffer{}
		cfg.HubClient = client(hubPool)
		_, stop := runAgent(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
		eventually(t, "a refused handshake", func() (bool, string) {
			return strings.Contains(logs.String(), "certificate signed by unknown authority"), logs.String()
		})
		stop()
		if n := impostor.hits(); n != 0 {
			t.Errorf("the impostor got %d requests; the agent must not send it anything (its proof included)", n)
		}
	})

	t.Run("a CA pool that also trusts the impostor: refused for the pinned keys, the proof never sent", func(t *testing.T) {
		logs := &syncBuffer{}
		cfg.HubClient = client(bothPool)
		before := impostor.handshakes()
		_, stop := runAgent(t, cfg, slog.New(slog.NewTextHandler(logs, nil)))
		eventually(t, "handshakes refused for the pinned keys", func() (bool, string) {
			return impostor.handshakes() >= before+2 &&
				strings.Contains(logs.String(), "presented a certificate whose keys differ from those it had at enrollment"), logs.String()
		})
		stop()
		if n := impostor.hits(); n != 0 {
			t.Errorf("the impostor got %d requests; the agent must not send it anything (its proof included)", n)
		}
	})

	t.Run("a transport that cannot be pinned: the impostor gets the tunnel, but nothing it sends is forwarded", func(t *testing.T) {
		cfg.HubClient = client(bothPool)
		cfg.HubClient.Transport = opaqueTransport{cfg.HubClient.Transport}
		_, stop := runAgent(t, cfg, nil)
		defer stop()
		sess := impostor.session(t)
		forged, _ := hubKeys(t) // the impostor's own key, under the hub's ID
		tok, err := forged.Sign(identity.Assertion{Cluster: testCluster, Mode: identity.ModeToken}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			header http.Header
		}{
			{"no assertion", http.Header{"Authorization": {"Bearer sa"}}},
			{"an assertion signed with the impostor's key under the hub's ID", http.Header{"Authorization": {"Bearer sa"}, identity.AssertionHeader: {tok}}},
		} {
			code, body := impostorGet(t, sess, tc.header)
			if code != http.StatusUnauthorized || !strings.Contains(body, "the agent accepts only requests the hub vouched for") {
				t.Errorf("%s: status %d %s; want the agent's 401 Status", tc.name, code, body)
			}
		}
		if n := len(api.requests()); n != 0 {
			t.Errorf("the API server got %d requests through the impostor", n)
		}
	})
}

// opaqueTransport hides an *http.Transport behind another RoundTripper, as
// an instrumenting wrapper would.
type opaqueTransport struct{ http.RoundTripper }

// impostor is a TLS server at the hub's name (127.0.0.1, example.com) with
// a certificate from a CA of its own; it takes any tunnel without checking
// the agent's proof.
type impostor struct {
	srv        *httptest.Server
	ca         *x509.Certificate
	n          atomic.Int32 // requests
	handshakes func() int
	sessions   chan *tunnel.Session
}

func newImpostor(t *testing.T) *impostor {
	t.Helper()
	ca := newTestCA(t, "impostor CA")
	leaf := ca.leaf(t, false)
	cert := newServedCert(leaf)
	im := &impostor{ca: ca.cert, sessions: make(chan *tunnel.Session, 16)}
	im.handshakes = func() int {
		n, _ := cert.seen(leaf)
		return n
	}
	im.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		im.n.Add(1)
		if r.URL.Path != TunnelPath {
			w.WriteHeader(http.StatusNoContent) // status reports: swallowed
			return
		}
		w.Header().Set(HeaderClusterMode, "kubernetes-rbac")
		sess, err := tunnel.Accept(w, r, tunnel.Config{})
		if err != nil {
			return
		}
		select {
		case im.sessions <- sess:
		default:
			sess.Close()
		}
	}))
	im.srv.TLS = &tls.Config{GetConfigForClient: cert.config}
	im.srv.StartTLS()
	t.Cleanup(func() {
		im.srv.Close()
		for {
			select {
			case s := <-im.sessions:
				s.Close()
			default:
				return
			}
		}
	})
	return im
}

func (im *impostor) hits() int { return int(im.n.Load()) }

// session waits for the agent's tunnel to the impostor.
func (im *impostor) session(t *testing.T) *tunnel.Session {
	t.Helper()
	select {
	case s := <-im.sessions:
		t.Cleanup(func() { s.Close() })
		return s
	case <-time.After(30 * time.Second):
		t.Fatal("the agent never opened a tunnel to the impostor")
		return nil
	}
}

// impostorGet sends one request with exactly header through sess.
func impostorGet(t *testing.T, sess *tunnel.Session, header http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := sess.Open(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req, _ := http.NewRequest(http.MethodGet, "http://agent/api/v1/pods", nil)
	req.Header = header.Clone()
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var st struct{ Kind, Message string }
	if json.Unmarshal(body, &st) != nil || st.Kind != "Status" {
		t.Errorf("the agent's answer is not a Status: %s", body)
	}
	return resp.StatusCode, string(body)
}
