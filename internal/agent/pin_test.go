package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// testCA is a CA of a test's own, issuing certificates for test servers.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

var testSerial atomic.Int64

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(testSerial.Add(1)), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

// leaf issues a certificate with a new key for the names test servers
// listen at (127.0.0.1, ::1, example.com), as httptest's own is; sendCA
// adds the CA's certificate to the chain the server presents.
func (ca *testCA) leaf(t *testing.T, sendCA bool) *tls.Certificate {
	return ca.issue(t, sendCA, []string{"example.com"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback})
}

func (ca *testCA) issue(t *testing.T, sendCA bool, dnsNames []string, ips []net.IP) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(testSerial.Add(1)), Subject: pkix.Name{CommonName: "server"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: dnsNames, IPAddresses: ips,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	if sendCA {
		c.Certificate = append(c.Certificate, ca.cert.Raw)
	}
	return c
}

// pinOf is the pin an agent should record for the key of c, computed apart
// from the agent's code.
func pinOf(t *testing.T, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// trusting is a hub client whose roots are cas; dial, when not nil,
// replaces its dialer.
func trusting(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error), cas ...*x509.Certificate) (*http.Client, *http.Transport) {
	t.Helper()
	pool := x509.NewCertPool()
	for _, ca := range cas {
		pool.AddCert(ca)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: dial}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, tr
}

// storedPins reads the pins in a state directory's hub.json.
func storedPins(t *testing.T, state string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, StateHubFile))
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ TLSPins []string }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatalf("hub.json %s: %v", b, err)
	}
	return f.TLSPins
}

// logRecords returns the records of a JSON log with the given message.
func logRecords(logs *syncBuffer, msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(logs.String()) {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// reconnect makes the agent connect anew: every connection to the hub is
// closed, tunnels included.
func (h *testHub) numSessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func (h *testHub) reconnect() {
	h.srv.CloseClientConnections()
	h.closeSessions()
}

// tofuMessage is logged when an agent pins the hub's keys on first use.
const tofuMessage = "the state has no TLS pins of the hub (enrolled by an older agent): pinned the keys it presents now"

// wantPinMessage is the refusal of a server presenting chain where the
// agent pinned pinned.
func wantPinMessage(host string, pinned, presented []string) string {
	return "the hub at " + host + " presented a certificate whose keys differ from those it had at enrollment " +
		"(pinned SubjectPublicKeyInfo SHA-256: " + strings.Join(pinned, ", ") + "; presented: " + strings.Join(presented, ", ") + "): " +
		"a man in the middle, or the hub's certificate and CA were replaced; " +
		"if the hub's CA really changed, re-enroll the agent with a new join token and an empty state"
}

// TestHubTLSPins: the agent pins the keys of the chain the hub presents at
// enrollment and refuses, before sending its proof, a server whose chain
// has none of them, even one with a certificate for the hub's name from a
// CA the agent trusts.
func TestHubTLSPins(t *testing.T) {
	_, api := fakeAPIServer(t)
	hubCA, otherCA := newTestCA(t, "hub CA"), newTestCA(t, "another CA")
	first := hubCA.leaf(t, true)
	cert := newServedCert(first)
	hub := newTestHubTLS(t, cert, "tjt_one")
	client, _ := trusting(t, nil, hubCA.cert, otherCA.cert)
	l, get := healthListener(t)
	logs := &syncBuffer{}
	state := t.TempDir()
	runAgent(t, Config{Hub: hub.url(), HubClient: client, JoinToken: "tjt_one", StateDir: state, APIServer: api, HealthListener: l, MetricsListener: l,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CheckInterval: 20 * time.Millisecond, StatusInterval: 20 * time.Millisecond},
		slog.New(slog.NewJSONHandler(logs, nil)))
	hub.waitFor("the agent's tunnel", func() bool { return len(hub.sessions) == 1 })
	pinned := []string{pinOf(t, first.Leaf.PublicKey), pinOf(t, hubCA.cert.PublicKey)}

	t.Run("enrollment pins every certificate of the hub's chain", func(t *testing.T) {
		if diff := cmp.Diff(pinned, storedPins(t, state)); diff != "" {
			t.Errorf("pins in hub.json (-want +got):\n%s", diff)
		}
		if recs := logRecords(logs, tofuMessage); len(recs) != 0 {
			t.Errorf("pinned on first use, not at enrollment: %v", recs)
		}
	})

	renewed := hubCA.leaf(t, false) // a new key, the CA not sent: only the agent's pool has it
	t.Run("a leaf renewed under the same CA is accepted", func(t *testing.T) {
		n, reports := hub.numSessions(), hub.numReports()
		cert.set(renewed)
		hub.reconnect()
		hub.waitFor("a tunnel and a status report over the renewed certificate", func() bool {
			_, proofs := cert.seen(renewed)
			return len(hub.sessions) > n && len(hub.reports) > reports && len(proofs) >= 2
		})
	})

	forged := otherCA.leaf(t, true) // the hub's name, a CA the agent's pool trusts
	t.Run("another CA's certificate for the hub's name is refused before the proof", func(t *testing.T) {
		cert.set(forged)
		hub.reconnect()
		want := wantPinMessage("127.0.0.1", pinned, []string{pinOf(t, forged.Leaf.PublicKey), pinOf(t, otherCA.cert.PublicKey)})
		eventually(t, "refused tunnels and status reports, logged as errors", func() (bool, string) {
			tunnels := logRecords(logs, "the hub's TLS keys are not those pinned at enrollment; reconnecting")
			reports := logRecords(logs, "status report refused: the hub's TLS keys are not those pinned at enrollment")
			handshakes, _ := cert.seen(forged)
			return len(tunnels) >= 2 && len(reports) >= 1 && handshakes >= 3, logs.String()
		})
		for _, msg := range []string{"the hub's TLS keys are not those pinned at enrollment; reconnecting", "status report refused: the hub's TLS keys are not those pinned at enrollment"} {
			for _, rec := range logRecords(logs, msg) {
				errMsg, _ := rec["err"].(string)
				if rec["level"] != "ERROR" || strings.TrimPrefix(errMsg, "dial hub: ") != want {
					t.Errorf("logged %v; want level ERROR and err %q", rec, want)
				}
			}
		}
		if _, proofs := cert.seen(forged); len(proofs) != 0 {
			t.Errorf("the server with the other CA's certificate got %d requests (Authorization %q); want none", len(proofs), proofs)
		}
		if code, body := get("/readyz/tunnel"); code != http.StatusServiceUnavailable || !strings.Contains(body, want) {
			t.Errorf("/readyz/tunnel: %d %s; want 503 with %q", code, body, want)
		}
		if _, body := get("/metrics"); metricValue(body, `tether_agent_tunnel_connect_failures_total{reason="pin_mismatch"}`) < 2 {
			t.Errorf("pin_mismatch failures not counted:\n%s", body)
		}
	})

	t.Run("the hub's own certificate appended to another CA's chain does not count", func(t *testing.T) {
		// Anyone can fetch the hub's certificate; only a chain that
		// verifies counts, and this one verifies through the other CA.
		padded := &tls.Certificate{Certificate: [][]byte{forged.Certificate[0], otherCA.cert.Raw, first.Leaf.Raw}, PrivateKey: forged.PrivateKey}
		cert.set(padded)
		want := wantPinMessage("127.0.0.1", pinned, []string{pinOf(t, forged.Leaf.PublicKey), pinOf(t, otherCA.cert.PublicKey), pinned[0]})
		eventually(t, "refused handshakes", func() (bool, string) {
			handshakes, _ := cert.seen(padded)
			return handshakes >= 2 && strings.Contains(logs.String(), want), logs.String()
		})
		if _, proofs := cert.seen(padded); len(proofs) != 0 {
			t.Errorf("the server got %d requests (Authorization %q); want none", len(proofs), proofs)
		}
	})

	t.Run("retried: the agent reconnects once the hub's certificate is back", func(t *testing.T) {
		n := hub.numSessions()
		cert.set(renewed)
		hub.waitFor("a tunnel", func() bool { return len(hub.sessions) > n })
		if _, proofs := cert.seen(forged); len(proofs) != 0 {
			t.Errorf("the server with the other CA's certificate got %d requests", len(proofs))
		}
	})
}

// TestHubTLSPinsTrustOnFirstUse: an agent whose state was stored before
// pinning pins the hub's chain at its first tunnel, stores the pins, and
// enforces them from then on.
func TestHubTLSPinsTrustOnFirstUse(t *testing.T) {
	_, api := fakeAPIServer(t)
	hubCA, otherCA := newTestCA(t, "hub CA"), newTestCA(t, "another CA")
	served := hubCA.leaf(t, true)
	cert := newServedCert(served)
	hub := newTestHubTLS(t, cert, "tjt_one")
	client, _ := trusting(t, nil, hubCA.cert, otherCA.cert)
	state := t.TempDir()
	cfg := Config{Hub: hub.url(), HubClient: client, JoinToken: "tjt_one", StateDir: state, APIServer: api,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CheckInterval: time.Hour, StatusInterval: time.Hour}
	_, stop := runAgent(t, cfg, nil)
	hub.waitFor("the agent's tunnel", func() bool { return len(hub.sessions) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// hub.json as an agent before pinning wrote it: an EnrollResponse.
	path := filepath.Join(state, StateHubFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var old EnrollResponse
	if err := json.Unmarshal(b, &old); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(old)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if pins := storedPins(t, state); pins != nil {
		t.Fatalf("the old hub.json has pins: %q", pins)
	}

	logs := &syncBuffer{}
	cfg.JoinToken = ""
	runAgent(t, cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	want := []string{pinOf(t, served.Leaf.PublicKey), pinOf(t, hubCA.cert.PublicKey)}
	eventually(t, "pins stored at the first tunnel", func() (bool, string) {
		return cmp.Equal(want, storedPins(t, state)), logs.String()
	})
	if recs := logRecords(logs, tofuMessage); len(recs) != 1 || recs[0]["level"] != "INFO" {
		t.Errorf("trust on first use logged %v; want one INFO record", recs)
	}
	var st hubFile
	b, _ = os.ReadFile(path)
	if err := json.Unmarshal(b, &st); err != nil || !cmp.Equal(old, st.EnrollResponse) {
		t.Errorf("hub.json after storing the pins: %s; want the enrollment kept (%v)", b, err)
	}

	forged := otherCA.leaf(t, false)
	cert.set(forged)
	hub.reconnect()
	eventually(t, "the learned pins enforced", func() (bool, string) {
		handshakes, _ := cert.seen(forged)
		return handshakes >= 2 && strings.Contains(logs.String(), wantPinMessage("127.0.0.1", want, []string{pinOf(t, forged.Leaf.PublicKey)})), logs.String()
	})
	if _, proofs := cert.seen(forged); len(proofs) != 0 {
		t.Errorf("the server with the other CA's certificate got %d requests", len(proofs))
	}
}

// TestHubTLSPinsThroughHTTPSProxy: an HTTPS proxy's own certificate, on
// the way to the hub, is verified as usual and not held to the hub's pins;
// the pins are the hub's.
func TestHubTLSPinsThroughHTTPSProxy(t *testing.T) {
	_, api := fakeAPIServer(t)
	hubCA, proxyCA := newTestCA(t, "hub CA"), newTestCA(t, "proxy CA")
	served := hubCA.leaf(t, false)
	hub := newTestHubTLS(t, newServedCert(served), "tjt_one")
	proxy := newConnectProxy(t, proxyCA.issue(t, false, []string{"proxy.test"}, nil))
	client, tr := trusting(t, func(ctx context.Context, network, addr string) (net.Conn, error) {
		if strings.HasPrefix(addr, "proxy.test:") {
			addr = proxy.srv.Listener.Addr().String()
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}, hubCA.cert, proxyCA.cert)
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "https", Host: "proxy.test:443"})
	state := t.TempDir()
	runAgent(t, Config{Hub: hub.url(), HubClient: client, JoinToken: "tjt_one", StateDir: state, APIServer: api,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, CheckInterval: time.Hour, StatusInterval: time.Hour}, nil)
	hub.waitFor("a tunnel and a status report", func() bool { return len(hub.sessions) == 1 && len(hub.reports) > 0 })
	// Enrollment, the tunnel and the report; the status report may share
	// enrollment's connection.
	if n := proxy.connects.Load(); n < 2 {
		t.Errorf("%d CONNECTs through the proxy, want at least 2", n)
	}
	if diff := cmp.Diff([]string{pinOf(t, served.Leaf.PublicKey)}, storedPins(t, state)); diff != "" {
		t.Errorf("pins: the hub's, not the proxy's (-want +got):\n%s", diff)
	}
}

// connectProxy is an HTTPS forward proxy: CONNECT only.
type connectProxy struct {
	srv      *httptest.Server
	connects atomic.Int32
	mu       sync.Mutex // guards conns
	conns    []net.Conn
}

func newConnectProxy(t *testing.T, cert *tls.Certificate) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{*cert}}
	p.srv.StartTLS()
	t.Cleanup(func() {
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
		p.srv.Close() // waits for the handlers, which end with their connections
	})
	return p
}

func (p *connectProxy) track(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, c)
}

// serve tunnels a CONNECT until either side closes.
func (p *connectProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.connects.Add(1)
	target, err := net.DialTimeout("tcp", r.Host, 10*time.Second)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	p.track(target)
	client, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		return
	}
	p.track(client)
	defer client.Close()
	defer target.Close()
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(target, rw) // rw holds what the client sent after CONNECT
		target.Close()
	}()
	io.Copy(client, target)
	client.Close()
	<-done
}

// TestStatePins: hub.json with and without pins, as older and newer agents
// write it.
func TestStatePins(t *testing.T) {
	st := testState(t)
	keyPEM, _ := st.encode()
	pin := base64.StdEncoding.EncodeToString(make([]byte, sha256.Size))
	tests := []struct {
		name     string
		hubJSON  string
		wantPins []string
		wantErr  string
	}{
		{name: "an older agent's hub.json: no pins", hubJSON: `{"cluster":"/groups/g/clusters/c","hubID":"test-hub","hubKeys":["unused"]}`},
		{name: "pins", hubJSON: `{"cluster":"/groups/g/clusters/c","hubID":"test-hub","hubKeys":["unused"],"tlsPins":["` + pin + `"]}`,
			wantPins: []string{pin}},
		{name: "a pin that is not a SHA-256", hubJSON: `{"cluster":"/groups/g/clusters/c","hubID":"test-hub","hubKeys":["unused"],"tlsPins":["AAAA"]}`,
			wantErr: `hub.json in state directory /x: pin "AAAA" is not the standard base64 of a SHA-256; delete it and enroll again with a new join token`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseState(keyPEM, []byte(tt.hubJSON), dirState{dir: "/x"})
			var gotErr string
			if err != nil {
				gotErr = strings.TrimPrefix(err.Error(), ErrRefused.Error()+": ")
			}
			if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
				t.Fatalf("error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantPins, got.pins); diff != "" {
				t.Errorf("pins (-want +got):\n%s", diff)
			}
		})
	}
	// Written back, the pins sit beside the EnrollResponse's fields.
	st.pins = []string{pin}
	_, hubJSON := st.encode()
	want := `{"cluster":"/groups/g/clusters/c","hubID":"test-hub","hubKeys":["unused"],"tlsPins":["` + pin + `"]}`
	if diff := cmp.Diff(want, string(hubJSON)); diff != "" {
		t.Errorf("hub.json (-want +got):\n%s", diff)
	}
}
