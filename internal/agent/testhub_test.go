package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/tunnel"
)

const testCluster = "/groups/g/clusters/c"

// testHub is a small hub with the real protocol: one-time join tokens,
// tunnels (package tunnel) and status reports, both proved with the
// enrolled key and checked with package agentkey as the hub does. It
// serves one cluster.
type testHub struct {
	t      *testing.T
	srv    *httptest.Server
	signer *identity.AssertionSigner
	replay agentkey.Replay
	// cert, when not nil, is the certificate the hub presents; nil means
	// httptest's own.
	cert *servedCert

	mu sync.Mutex // guards the fields below
	// tokens maps each join token to whether it is spent.
	tokens map[string]bool
	key    ed25519.PublicKey // the enrolled agent key
	// enrollCode, tunnelCode and statusCode, when not 0, are the answers
	// to every such request (a hub that is down, draining or older).
	enrollCode, tunnelCode, statusCode int
	tunnelURL                          string // sent at enrollment
	enrolled                           int    // successful enrollments
	hits                               []string
	sessions                           []*tunnel.Session
	reports                            []hubReport
	changed                            chan struct{} // closed and replaced on every change
}

// hubReport is a status report as the hub received it.
type hubReport struct {
	Host   string
	Report StatusReport
}

func newTestHub(t *testing.T, tokens ...string) *testHub {
	return newTestHubTLS(t, nil, tokens...)
}

// newTestHubTLS is newTestHub presenting the certificate cert holds at
// each handshake, or httptest's own if cert is nil.
func newTestHubTLS(t *testing.T, cert *servedCert, tokens ...string) *testHub {
	signer, _ := hubKeys(t)
	h := &testHub{t: t, signer: signer, cert: cert, tokens: map[string]bool{}, changed: make(chan struct{})}
	for _, tok := range tokens {
		h.tokens[tok] = false
	}
	h.srv = httptest.NewUnstartedServer(h)
	if cert != nil {
		h.srv.TLS = &tls.Config{GetConfigForClient: cert.config}
		h.srv.Config.ConnContext = cert.connContext
	}
	h.srv.StartTLS()
	t.Cleanup(func() {
		h.srv.Close()
		h.closeSessions()
	})
	return h
}

// url is the hub's base URL, for Config.Hub.
func (h *testHub) url() *url.URL {
	u, _ := url.Parse(h.srv.URL)
	return u
}

// lock runs f with mu held and tells the waiters.
func (h *testHub) lock(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
	close(h.changed)
	h.changed = make(chan struct{})
}

// waitFor polls cond (called with mu held) until it holds, on every change,
// for up to 30 s.
func (h *testHub) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		h.mu.Lock()
		ok, changed := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			h.mu.Lock()
			defer h.mu.Unlock()
			h.t.Fatalf("hub: no %s after 30s; requests: %q; reports: %+v", what, h.hits, h.reports)
		}
	}
}

// waitReport waits for a report, after the first skip ones, that match
// accepts, and returns it with the number of reports seen.
func (h *testHub) waitReport(what string, skip int, match func(hubReport) bool) (hubReport, int) {
	h.t.Helper()
	var got hubReport
	var n int
	h.waitFor("report: "+what, func() bool {
		for i := skip; i < len(h.reports); i++ {
			if match(h.reports[i]) {
				got, n = h.reports[i], len(h.reports)
				return true
			}
		}
		return false
	})
	return got, n
}

func (h *testHub) numReports() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.reports)
}

// liveSessions returns the tunnels not closed yet.
func (h *testHub) liveSessions() []*tunnel.Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	var live []*tunnel.Session
	for _, s := range h.sessions {
		if s.Err() == nil {
			live = append(live, s)
		}
	}
	return live
}

func (h *testHub) closeSessions() {
	h.mu.Lock()
	sessions := h.sessions
	h.mu.Unlock()
	for _, s := range sessions {
		s.Close()
	}
}

func (h *testHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.cert != nil {
		h.cert.request(r)
	}
	var code int
	h.lock(func() {
		h.hits = append(h.hits, r.Method+" "+r.Host+r.URL.Path)
		switch r.URL.Path {
		case EnrollPath:
			code = h.enrollCode
		case TunnelPath:
			code = h.tunnelCode
		case StatusPath:
			code = h.statusCode
		}
	})
	if code != 0 {
		tunnel.Refuse(w, code, fmt.Sprintf("test hub answers %d", code))
		return
	}
	switch r.URL.Path {
	case EnrollPath:
		h.enroll(w, r)
	case TunnelPath:
		if h.verify(w, r) {
			w.Header().Set(HeaderClusterMode, "kubernetes-rbac")
			sess, err := tunnel.Accept(w, r, tunnel.Config{})
			if err != nil {
				h.t.Errorf("hub: accept tunnel: %v", err)
				return
			}
			h.lock(func() { h.sessions = append(h.sessions, sess) })
		}
	case StatusPath:
		if !h.verify(w, r) {
			return
		}
		var rep StatusReport
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&rep); err != nil {
			h.t.Errorf("hub: status report: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.lock(func() { h.reports = append(h.reports, hubReport{Host: r.Host, Report: rep}) })
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (h *testHub) enroll(w http.ResponseWriter, r *http.Request) {
	var req EnrollRequest
	json.NewDecoder(r.Body).Decode(&req)
	pub, _ := base64.StdEncoding.DecodeString(req.PublicKey)
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	code := http.StatusOK
	var tunnelURL string
	h.lock(func() {
		spent, known := h.tokens[token]
		switch {
		case !known:
			code = http.StatusUnauthorized
		case spent:
			code = http.StatusGone
		default:
			h.tokens[token] = true
			h.key = pub
			h.enrolled++
			tunnelURL = h.tunnelURL
		}
	})
	if code != http.StatusOK {
		tunnel.Refuse(w, code, "join token refused with "+strconv.Itoa(code))
		return
	}
	hubPub, _ := identity.MarshalPublicKeyPEM(h.signer.PublicKey())
	json.NewEncoder(w).Encode(EnrollResponse{Cluster: testCluster, HubID: "test-hub", HubKeys: []string{string(hubPub)}, TunnelURL: tunnelURL})
}

// verify checks the agent's proof as the hub does, answering 401 if it
// fails.
func (h *testHub) verify(w http.ResponseWriter, r *http.Request) bool {
	h.mu.Lock()
	key := h.key
	h.mu.Unlock()
	if _, err := agentkey.Verify(r.Header.Get("Authorization"), key, r.Host, time.Now(), &h.replay); err != nil {
		h.t.Errorf("hub: %s: agent proof refused: %v", r.URL.Path, err)
		tunnel.Refuse(w, http.StatusUnauthorized, err.Error())
		return false
	}
	return true
}

// get sends a request through a tunnel with an assertion for mode, as the
// hub's gateway would, and returns the status and body.
func (h *testHub) get(sess *tunnel.Session, path string, header http.Header) (int, string) {
	h.t.Helper()
	tok, err := h.signer.Sign(identity.Assertion{Cluster: testCluster, Mode: identity.ModeToken}, time.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	conn, err := sess.Open(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()
	req, _ := http.NewRequest(http.MethodGet, "http://agent"+path, nil)
	req.Header = header.Clone()
	req.Header.Set(identity.AssertionHeader, tok)
	if err := req.Write(conn); err != nil {
		h.t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// runAgent runs an agent until the test ends; the returned function stops
// it early and returns Run's error.
func runAgent(t *testing.T, cfg Config, logger *slog.Logger) (*Agent, func() error) {
	t.Helper()
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	a, err := New(cfg, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return 30s after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() { stop() })
	return a, stop
}

// healthListener listens for an agent's health endpoints; it returns the
// listener and a function that GETs a path from it.
func healthListener(t *testing.T) (net.Listener, func(path string) (int, string)) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	return l, func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + l.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}

// metricValue finds one series (name{labels} exactly as exposed) in a
// /metrics body; -1 if absent.
func metricValue(body, series string) float64 {
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return f
			}
		}
	}
	return -1
}

// eventually polls cond every 10 ms for up to 30 s.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s after 30s: %s", what, detail)
		}
		<-time.After(10 * time.Millisecond) // polling with a deadline
	}
}

// servedCert is the certificate a test server presents, which a test may
// change between handshakes. It counts the handshakes made with each
// certificate and keeps the Authorization of each request they carried.
type servedCert struct {
	mu  sync.Mutex // guards the fields below
	cur *tls.Certificate
	// byConn is the certificate each connection got, by its TCP connection.
	byConn     map[net.Conn]*tls.Certificate
	handshakes map[*tls.Certificate]int
	proofs     map[*tls.Certificate][]string
}

func newServedCert(c *tls.Certificate) *servedCert {
	return &servedCert{cur: c, byConn: map[net.Conn]*tls.Certificate{},
		handshakes: map[*tls.Certificate]int{}, proofs: map[*tls.Certificate][]string{}}
}

func (s *servedCert) set(c *tls.Certificate) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = c
}

// config is the server's GetConfigForClient: it is called at every
// handshake, with or without SNI (a client dialling an IP sends none).
func (s *servedCert) config(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handshakes[s.cur]++
	s.byConn[hello.Conn] = s.cur
	return &tls.Config{Certificates: []tls.Certificate{*s.cur}, NextProtos: []string{"http/1.1"}}, nil
}

type tlsConnKey struct{}

// connContext is the server's ConnContext: it keeps the connection for
// request.
func (s *servedCert) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, tlsConnKey{}, c)
}

// request records r's Authorization under the certificate its connection
// got.
func (s *servedCert) request(r *http.Request) {
	c, _ := r.Context().Value(tlsConnKey{}).(*tls.Conn)
	if c == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cert := s.byConn[c.NetConn()]
	s.proofs[cert] = append(s.proofs[cert], r.Header.Get("Authorization"))
}

// seen returns the number of handshakes made with c and the Authorization
// of each request they carried.
func (s *servedCert) seen(c *tls.Certificate) (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.handshakes[c], slices.Clone(s.proofs[c])
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
