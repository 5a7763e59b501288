package browser

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testTimeout bounds each test's browser work.
const testTimeout = 10 * time.Second

const signInPage = `<!doctype html>
<title>Sign in</title>
<form method="post" action="/login">
  <label>User <input type="text" name="username"></label>
  <label>Password <input type="password" name="password"></label>
  <button type="submit" name="action" value="cancel" id="cancel">Cancel</button>
  <button type="submit" name="action" value="login" id="login">Sign in</button>
</form>`

// recorder keeps what a handler was sent.
type recorder struct {
	mu  sync.Mutex // guards got
	got []url.Values
}

func (r *recorder) add(v url.Values) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, v)
}

func (r *recorder) values() []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

// startBrowser starts a browser closed at the end of the test, logging to
// the test's output.
func startBrowser(t *testing.T, opts Options) *Browser {
	t.Helper()
	opts.Log = t.Output()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	start := time.Now()
	b, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("browser started in %v", time.Since(start))
	t.Cleanup(b.Close)
	return b
}

// newTab opens a tab with testTimeout, closed at the end of the test.
func newTab(t *testing.T, b *Browser) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	tab, closeTab := b.NewTab(ctx)
	t.Cleanup(closeTab)
	return tab
}

func certPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func TestSubmitForm(t *testing.T) {
	const body = "Signed in as alice. You can close this window."
	var callbacks recorder
	loopback := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/callback" {
			http.NotFound(w, r)
			return
		}
		callbacks.add(r.URL.Query())
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte("<!doctype html><p>" + body))
	}))
	defer loopback.Close()

	var logins recorder
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(signInPage))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		logins.add(r.PostForm)
		if r.PostForm.Get("username") != "alice" || r.PostForm.Get("password") != "s3cret pass" || r.PostForm.Get("action") != "login" {
			http.Error(w, "wrong form", http.StatusUnauthorized)
			return
		}
		http.Redirect(w, r, loopback.URL+"/callback?code=c0de&state=st4te", http.StatusSeeOther)
	})
	hub := httptest.NewTLSServer(mux)
	defer hub.Close()

	b := startBrowser(t, Options{TrustPEM: certPEM(hub.Certificate())})
	tab := newTab(t, b)

	start := time.Now()
	finalURL, text, err := SubmitForm(tab, hub.URL, map[string]string{
		"username": "alice",
		"password": "s3cret pass",
	}, "#login")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("form submitted in %v", time.Since(start))

	wantLogins := []url.Values{{"username": {"alice"}, "password": {"s3cret pass"}, "action": {"login"}}}
	if diff := cmp.Diff(wantLogins, logins.values()); diff != "" {
		t.Errorf("form posted to the TLS server (-want +got):\n%s", diff)
	}
	wantCallbacks := []url.Values{{"code": {"c0de"}, "state": {"st4te"}}}
	if diff := cmp.Diff(wantCallbacks, callbacks.values()); diff != "" {
		t.Errorf("queries of the loopback server (-want +got):\n%s", diff)
	}
	if want := loopback.URL + "/callback?code=c0de&state=st4te"; finalURL != want {
		t.Errorf("final URL = %q, want %q", finalURL, want)
	}
	if text != body {
		t.Errorf("body text = %q, want %q", text, body)
	}
}

func TestSubmitFormMissingField(t *testing.T) {
	hub := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(signInPage))
	}))
	defer hub.Close()
	b := startBrowser(t, Options{TrustPEM: certPEM(hub.Certificate())})
	tab := newTab(t, b)

	ctx, cancel := context.WithTimeout(tab, time.Second)
	defer cancel()
	_, _, err := SubmitForm(ctx, hub.URL, map[string]string{"otp": "123456"}, "#login")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `set field [name="otp"]`) {
		t.Errorf("SubmitForm with a missing field: err = %v, want a deadline naming the field", err)
	}

	// The tab outlives the shorter context.
	if err := chromedp.Do(tab, chromedp.Navigate(hub.URL)); err != nil {
		t.Errorf("navigate after a timed-out SubmitForm: %v", err)
	}
}

func TestCertificateNotPinned(t *testing.T) {
	hub := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("should not be reached"))
	}))
	hub.Config.ErrorLog = log.New(t.Output(), "hub: ", 0) // the refused handshakes
	hub.StartTLS()
	defer hub.Close()

	tests := []struct {
		name  string
		trust []byte
	}{
		{name: "no TrustPEM"},
		{name: "another certificate pinned", trust: certPEM(selfSigned(t))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := startBrowser(t, Options{TrustPEM: tt.trust})
			tab := newTab(t, b)
			err := chromedp.Do(tab, chromedp.Navigate(hub.URL))
			var loadErr *chromedp.LoadError
			if !errors.As(err, &loadErr) || !strings.HasPrefix(loadErr.ErrorText, "net::ERR_CERT_") {
				t.Errorf("navigate to an untrusted server: err = %v, want a net::ERR_CERT_* load error", err)
			}
		})
	}
}

func TestConsoleToLog(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><script>console.log("hello from", "the page"); throw new Error("boom")</script>`))
	}))
	defer page.Close()

	var buf bytes.Buffer
	logw := &lockedWriter{w: &buf} // read below while the browser writes
	logged := func() string {
		logw.mu.Lock()
		defer logw.mu.Unlock()
		return buf.String()
	}
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	b, err := Start(ctx, Options{Log: logw})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tab, closeTab := b.NewTab(ctx)
	defer closeTab()
	if err := chromedp.Do(tab, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}

	// The console reaches Log asynchronously.
	want := []string{"console log: hello from the page\n", "console exception: Uncaught Error: boom"}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !containsAll(logged(), want) {
		select {
		case <-ctx.Done():
			t.Fatalf("Log = %q, want it to contain %q", logged(), want)
		case <-tick.C:
		}
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestCloseStopsBrowser(t *testing.T) {
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><p>hello"))
	}))
	defer page.Close()

	b := startBrowser(t, Options{})
	// A loaded page, so that renderer processes exist too.
	tab := newTab(t, b)
	if err := chromedp.Do(tab, chromedp.Navigate(page.URL)); err != nil {
		t.Fatal(err)
	}
	dir := b.dataDir
	if dir == "" {
		t.Fatal("profile directory unknown")
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("profile directory while running: %v", err)
	}
	// The process chromedp started (with Debian's package, a shell wrapper)
	// and everything below it: the browser, zygotes, renderers, utilities.
	tree := processTree(t, b.proc.Pid)
	if len(tree) < 3 {
		t.Fatalf("process tree while running = %v, want the browser and its children", tree)
	}

	start := time.Now()
	b.Close()
	t.Logf("closed in %v; %d processes were running", time.Since(start), len(tree))
	b.Close() // idempotent

	for pid, started := range tree {
		if st, ok := procStat(pid); ok && st.state != "Z" && st.started == started {
			t.Errorf("process %d (%s) still running after Close", pid, st.comm)
		}
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("profile directory %s after Close: stat = %v, want not exist", dir, err)
	}
}

// stat is what the tests read of /proc/<pid>/stat.
type stat struct {
	comm, state string
	ppid        int
	started     string // start time since boot, in clock ticks
}

// procStat reads /proc/<pid>/stat; ok is false when there is no such
// process.
func procStat(pid int) (st stat, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	// pid (comm) state ppid ... with starttime the 22nd field; comm may
	// hold spaces and parentheses.
	open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return stat{}, false
	}
	fields := strings.Fields(string(data[end+1:]))
	if len(fields) < 20 {
		return stat{}, false
	}
	ppid, err := strconv.Atoi(fields[1])
	if err != nil {
		return stat{}, false
	}
	return stat{comm: string(data[open+1 : end]), state: fields[0], ppid: ppid, started: fields[19]}, true
}

// processTree returns root and its descendants, each with its start time.
func processTree(t *testing.T, root int) map[int]string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	children := map[int][]int{}
	stats := map[int]stat{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := procStat(pid); ok {
			stats[pid] = st
			children[st.ppid] = append(children[st.ppid], pid)
		}
	}
	tree := map[int]string{}
	for queue := []int{root}; len(queue) > 0; queue = queue[1:] {
		pid := queue[0]
		if st, ok := stats[pid]; ok {
			tree[pid] = st.started
			queue = append(queue, children[pid]...)
		}
	}
	return tree
}

func TestStartWithoutChromium(t *testing.T) {
	tests := []struct {
		name     string
		chromium string
		want     string
	}{
		{name: "nothing on PATH", want: "install the Debian package chromium-headless-shell"},
		{name: "TETHER_CHROMIUM not found", chromium: "no-such-chromium", want: "TETHER_CHROMIUM=no-such-chromium"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv(chromiumEnv, tt.chromium)
			b, err := Start(t.Context(), Options{})
			if err == nil {
				b.Close()
				t.Fatal("Start succeeded without a browser")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start: err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSPKIHashesRejects(t *testing.T) {
	cert := certPEM(selfSigned(t))
	tests := []struct {
		name string
		pem  []byte
		want string
	}{
		{name: "not PEM", pem: []byte("hello"), want: "not PEM"},
		{name: "garbage after a certificate", pem: append(bytes.Clone(cert), "hello"...), want: "after certificate 1"},
		{name: "private key", pem: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}), want: `"PRIVATE KEY"`},
		{name: "bad certificate", pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), want: "certificate 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := SPKIHashes(tt.pem)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("SPKIHashes: err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestSPKIHashes(t *testing.T) {
	certs := []*x509.Certificate{selfSigned(t), selfSigned(t)}
	var pemData []byte
	var want []string
	for _, c := range certs {
		pemData = append(pemData, certPEM(c)...)
		spki, err := x509.MarshalPKIXPublicKey(c.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(spki)
		want = append(want, base64.StdEncoding.EncodeToString(sum[:]))
	}
	got, err := SPKIHashes(pemData)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("SPKIHashes (-want +got):\n%s", diff)
	}
}

// selfSigned makes a self-signed certificate with a key of its own.
func selfSigned(t *testing.T) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "other"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
