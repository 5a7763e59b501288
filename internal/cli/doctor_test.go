package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store/sqlite"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func newTestCA(t *testing.T, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, file: file}
}

// serving is a server certificate for hub.invalid and 127.0.0.1, valid
// for the given time from now.
func (ca testCA) serving(t *testing.T, valid time.Duration) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "hub"},
		DNSNames: []string{"hub.invalid"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(valid),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// doctorHub is a real hub with its embedded issuer (so that a service
// principal can sign in), served with a certificate of its own CA, with
// a Date header that can be set off by skew.
type doctorHub struct {
	testHub
	port string
	skew *atomic.Int64 // nanoseconds the Date header is ahead
}

func startDoctorHub(t *testing.T) doctorHub {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(dir, "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := identity.GenerateAssertionKey()
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t, "doctor test CA")
	var handler atomic.Pointer[http.Handler] // set once the server's URL is known
	skew := new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := skew.Load(); s != 0 {
			// net/http sets Date only when the handler has not.
			w.Header().Set("Date", time.Now().Add(time.Duration(s)).UTC().Format(http.TimeFormat))
		}
		(*handler.Load()).ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serving(t, 90*24*time.Hour)}}
	srv.StartTLS()
	t.Cleanup(srv.Close)

	logger := slog.New(slog.DiscardHandler)
	emb, err := newEmbeddedIssuer(srv.URL+"/oidc", dir, st, time.Hour, func(audit.Event) {}, logger)
	if err != nil {
		t.Fatal(err)
	}
	verifier, logins, err := loadIssuers("", emb, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(verifier.Close)
	const token = "tat_doctor-test"
	h, err := hub.New(hub.Config{
		Store: st, AdminTokenHash: hub.HashToken(token), HubID: "doctor-test", AssertionKey: key, Replica: "test",
		Verifier: verifier, EmbeddedIssuer: emb.url, IssuerHandler: emb.issuer, Logins: logins, Version: Version,
	}, logger)
	if err != nil {
		t.Fatal(err)
	}
	hh := h.Handler()
	handler.Store(&hh)

	th := testHub{url: srv.URL, ca: ca.file, tokenFile: filepath.Join(dir, "admin.token")}
	if err := os.WriteFile(th.tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", t.TempDir())
	t.Setenv("TETHER_ADMIN_TOKEN_FILE", "")
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	return doctorHub{testHub: th, port: port, skew: skew}
}

// connectProxy is an HTTP proxy that serves CONNECT to any host at the
// port of target, on 127.0.0.1; with wantAuth set it asks for
// credentials first. It records the targets it was asked for.
type connectProxy struct {
	url      string
	mu       sync.Mutex
	connects []string // guarded by mu
}

func startConnectProxy(t *testing.T, wantAuth bool) *connectProxy {
	t.Helper()
	p := &connectProxy{}
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
			return
		}
		p.mu.Lock()
		p.connects = append(p.connects, r.Host)
		p.mu.Unlock()
		if wantAuth {
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			http.Error(w, "credentials, please", http.StatusProxyAuthRequired)
			return
		}
		_, port, err := net.SplitHostPort(r.Host)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		upstream, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			upstream.Close()
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n")
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(conn, upstream)
		go pipe(upstream, conn)
	}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		wg.Wait()
	})
	p.url = srv.URL
	return p
}

func (p *connectProxy) targets() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.connects...)
}

// runTether runs tether with args as they are (no --hub added).
func runTether(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), append([]string{"tether"}, args...), strings.NewReader(""), &out, &errOut)
	return out.String(), errOut.String(), err
}

// checkLines are the checks as "name status", to compare at a glance.
func checkLines(checks []doctorCheck) []string {
	var out []string
	for _, c := range checks {
		out = append(out, c.Name+" "+c.Status)
	}
	return out
}

func TestDoctor(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) }) // runs last: after the servers close
	t.Setenv("HTTPS_PROXY", "")
	t.Setenv("https_proxy", "")
	t.Setenv("NO_PROXY", "")
	t.Setenv("no_proxy", "")
	t.Setenv("NO_COLOR", "")

	dh := startDoctorHub(t)
	dh.admin(t, "", "cluster", "create", "-g", "prod", "-n", "edge-1")
	out, _ := dh.admin(t, "", "ad", "sp", "create", "--display-name", "doctor", "-o", "json")
	sp := decodeOut[hub.CreatedServicePrincipal](t, out)
	if _, errOut, err := dh.run(t, "", "login", "--service-principal", "-u", sp.AppID, "-p", sp.Password); err != nil {
		t.Fatalf("login: %v\n%s", err, errOut)
	}
	dh.admin(t, "", "role", "assignment", "create", "--role", "Cluster User", "--assignee", sp.ID, "--assignee-type", "servicePrincipal", "--scope", "/groups/prod")

	otherCA := newTestCA(t, "some other CA")
	expiring := httptest.NewUnstartedServer(http.NotFoundHandler())
	expiringCA := newTestCA(t, "expiring CA")
	expiring.TLS = &tls.Config{Certificates: []tls.Certificate{expiringCA.serving(t, 3*24*time.Hour+time.Hour)}}
	expiring.StartTLS()
	t.Cleanup(expiring.Close)
	proxy := startConnectProxy(t, false)
	authProxy := startConnectProxy(t, true)
	viaProxy := "https://hub.invalid:" + dh.port

	upToSignIn := []string{"hub url ok", "dns ok", "tcp ok", "tls ok", "hub api ok", "clock ok", "version ok", "sign-in ok"}
	tests := []struct {
		name     string
		hub, ca  string
		proxy    string
		skew     time.Duration
		args     []string
		want     []string
		wantCode int
		// wantSaid maps a check's name to words its line must hold.
		wantSaid map[string]string
	}{{
		name: "signed in, cluster without an agent", hub: dh.url, ca: dh.ca,
		args:     []string{"-u", sp.AppID, "-g", "prod", "-n", "edge-1"},
		want:     append(append([]string{}, upToSignIn...), "cluster fail", "agent skipped", "tunnel skipped"),
		wantCode: 1,
		wantSaid: map[string]string{
			"sign-in": `signed in as "doctor" (servicePrincipal ` + sp.ID,
			"cluster": "prod/edge-1 is Connecting: registered, but its agent has never connected; fix: install its agent: tether cluster connect -g prod -n edge-1",
			"agent":   "skipped: needs the cluster's record, Connected",
			"tunnel":  "skipped: needs a sign-in and a connected cluster",
			"tls":     `certificate for 127.0.0.1 issued by "doctor test CA", verified against the CA in ` + dh.ca,
		},
	}, {
		name: "not signed in", hub: dh.url, ca: dh.ca,
		args:     []string{"-g", "prod", "-n", "edge-1"},
		want:     []string{"hub url ok", "dns ok", "tcp ok", "tls ok", "hub api ok", "clock ok", "version ok", "sign-in fail", "cluster skipped", "agent skipped", "tunnel skipped"},
		wantCode: 1,
		wantSaid: map[string]string{"sign-in": "you are not signed in to 127.0.0.1:" + dh.port + "; fix: run tether login", "cluster": "skipped: needs a sign-in the hub accepts"},
	}, {
		name: "not the hub's CA", hub: dh.url, ca: otherCA.file,
		args:     []string{"-u", sp.AppID},
		want:     []string{"hub url ok", "dns ok", "tcp ok", "tls fail", "hub api skipped", "clock skipped", "version skipped", "sign-in skipped"},
		wantCode: 1,
		wantSaid: map[string]string{"tls": `issued by "doctor test CA", is not signed by the CA in ` + otherCA.file + "; fix: --hub-ca " + otherCA.file + ` is not the hub's CA: pass the CA that signed the hub's certificate (issuer "doctor test CA")`},
	}, {
		name: "hub clock 2 minutes ahead", hub: dh.url, ca: dh.ca, skew: 2 * time.Minute,
		args:     []string{"-u", sp.AppID},
		want:     []string{"hub url ok", "dns ok", "tcp ok", "tls ok", "hub api ok", "clock warn", "version ok", "sign-in ok"},
		wantSaid: map[string]string{"clock": "the hub's clock is 2m0s ahead of this machine's: more than 30s, on the way to token failures; fix: synchronise the clocks"},
	}, {
		name: "hub clock 10 minutes behind", hub: dh.url, ca: dh.ca, skew: -10 * time.Minute,
		args:     []string{"-u", sp.AppID},
		want:     []string{"hub url ok", "dns ok", "tcp ok", "tls ok", "hub api ok", "clock fail", "version ok", "sign-in ok"},
		wantCode: 1,
		wantSaid: map[string]string{"clock": "the hub's clock is 10m0s behind this machine's: tokens are issued and checked with a few minutes' leeway, so they will be refused"},
	}, {
		name: "certificate about to expire", hub: expiring.URL, ca: expiringCA.file,
		want: []string{"hub url ok", "dns ok", "tcp ok", "tls warn", "hub api fail", "clock skipped", "version skipped", "sign-in skipped"},
		// The server is no hub: its 404 is a failure of its own.
		wantCode: 1,
		wantSaid: map[string]string{
			"tls":     "the hub's certificate expires in 3 days; fix: renew the hub's certificate",
			"hub api": "GET /api/v1/version answered 404 Not Found",
		},
	}, {
		name: "through HTTPS_PROXY", hub: viaProxy, ca: dh.ca, proxy: proxy.url,
		// The name does not resolve here; the proxy reaches the hub. The
		// sign-in fails either way: net/http reads the proxy environment
		// once per process, so in this test process its client may not
		// use the proxy, and through it no one is signed in.
		want:     []string{"hub url ok", "dns warn", "tcp ok", "tls ok", "hub api ok", "clock ok", "version ok", "sign-in fail"},
		wantCode: 1,
		wantSaid: map[string]string{
			"hub url": viaProxy + " (from --hub), through proxy " + proxy.url + " (from HTTPS_PROXY)",
			"tcp":     "connected through proxy " + proxy.url + " (from HTTPS_PROXY), which answered CONNECT hub.invalid:" + dh.port + " with 200",
		},
	}, {
		name: "a proxy that wants credentials", hub: viaProxy, ca: dh.ca, proxy: authProxy.url,
		want:     []string{"hub url ok", "dns warn", "tcp fail", "tls skipped", "hub api skipped", "clock skipped", "version skipped", "sign-in skipped"},
		wantCode: 1,
		wantSaid: map[string]string{"tcp": "wants credentials (407) for CONNECT hub.invalid:" + dh.port + "; fix: put them in HTTPS_PROXY: http://USER:PASSWORD@" + strings.TrimPrefix(authProxy.url, "http://")},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("HTTPS_PROXY", tt.proxy)
			dh.skew.Store(int64(tt.skew))
			t.Cleanup(func() { dh.skew.Store(0) })
			args := append([]string{"doctor", "--hub", tt.hub, "--hub-ca", tt.ca}, tt.args...)

			out, _, err := runTether(append(args, "-o", "json")...)
			if diff := cmp.Diff(tt.wantCode, exitCode(err)); diff != "" {
				t.Errorf("exit code (-want +got):\n%s (err: %v)", diff, err)
			}
			checks := decodeOut[[]doctorCheck](t, out)
			if diff := cmp.Diff(tt.want, checkLines(checks)); diff != "" {
				t.Errorf("checks (-want +got):\n%s\n%s", diff, out)
			}

			table, _, _ := runTether(args...)
			lines := map[string]string{}
			for _, c := range checks {
				lines[c.Name] = c.line(false)
			}
			for name, words := range tt.wantSaid {
				if !strings.Contains(lines[name], words) {
					t.Errorf("check %s says %q; want it to say %q", name, lines[name], words)
				}
				if !strings.Contains(table, lines[name]) {
					t.Errorf("the table output lacks the line %q:\n%s", lines[name], table)
				}
			}
		})
	}
	if got := proxy.targets(); len(got) == 0 || got[0] != "hub.invalid:"+dh.port {
		t.Errorf("the proxy was asked to CONNECT %q; want hub.invalid:%s", got, dh.port)
	}
}

// exitCode is the exit code main gives err.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	return ExitCode(err)
}

func TestDoctorLine(t *testing.T) {
	tests := []struct {
		name   string
		check  doctorCheck
		colour bool
		want   string
	}{
		{name: "ok", check: doctorCheck{Name: "dns", Status: checkOK, Detail: "a resolves"}, want: "ok    dns      a resolves\n"},
		{name: "fail with a fix", check: doctorCheck{Name: "tcp", Status: checkFail, Detail: "refused", Fix: "start it"}, want: "FAIL  tcp      refused; fix: start it\n"},
		{name: "skipped", check: doctorCheck{Name: "tls", Status: checkSkipped, Detail: "skipped: needs tcp"}, want: "skip  tls      skipped: needs tcp\n"},
		{name: "coloured warning", check: doctorCheck{Name: "clock", Status: checkWarn, Detail: "off", Fix: "ntp"}, colour: true, want: "\x1b[33mwarn\x1b[0m  clock    off; fix: ntp\n"},
		{name: "coloured failure", check: doctorCheck{Name: "tcp", Status: checkFail, Detail: "x", Fix: "y"}, colour: true, want: "\x1b[31mFAIL\x1b[0m  tcp      x; fix: y\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.check.line(tt.colour)); diff != "" {
				t.Errorf("line (-want +got):\n%s", diff)
			}
		})
	}
}
