package localproxy

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// asciiLower lowers ASCII letters only.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// loopbackAddr is the oracle for a loopback peer or host: "localhost" in
// any ASCII case, or a loopback IP literal, as net/netip reads it.
func loopbackAddr(host string, nameOK bool) bool {
	if nameOK && asciiLower(host) == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// FuzzProxyGate: the local proxy forwards a request only from a loopback
// peer, for a loopback Host, with no Origin or a loopback page's, and with
// exactly its local token; what it forwards carries the real credential and
// none of the client's Impersonate-* or X-Forwarded-For headers. "{token}"
// in the Authorization value stands for the proxy's local token. A
// well-formed local request is forwarded.
func FuzzProxyGate(f *testing.F) {
	for _, seed := range []struct{ remote, host, auth, origin string }{
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", ""},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "http://localhost:3000"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "https://evil.example"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "null"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "http://127.0.0.1.evil.example"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "file://"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "http://[::1]:80"},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}", "chrome-extension://localhost"},
		{"[::1]:50000", "[::1]:8443", "bearer   {token} ", ""},
		{"127.0.0.1:50000", "LOCALHOST:8443", "BEARER {token}", ""},
		{"127.0.0.1:50000", "localhost.evil.example:8443", "Bearer {token}", ""},
		{"127.0.0.1:50000", "127.0.0.1.nip.io", "Bearer {token}", ""},
		{"127.0.0.1:50000", "[localhost]:8443", "Bearer {token}", ""},
		{"127.0.0.1:50000", "::ffff:127.0.0.1", "Bearer {token}", ""},
		{"127.0.0.1:50000", "2130706433", "Bearer {token}", ""},
		{"127.0.0.1:50000", "127.1", "Bearer {token}", ""},
		{"127.0.0.1:50000", "0x7f.1", "Bearer {token}", ""},
		{"192.0.2.1:50000", "127.0.0.1:8443", "Bearer {token}", ""},
		{"127.0.0.1", "127.0.0.1:8443", "Bearer {token}", ""},
		{"[::ffff:127.0.0.1]:1", "localhost", "Bearer {token}", ""},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer {token}x", ""},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Basic {token}", ""},
		{"127.0.0.1:50000", "127.0.0.1:8443", "Bearer", ""},
		{"127.0.0.1:50000", "127.0.0.1:8443", "", ""},
	} {
		f.Add(seed.remote, seed.host, seed.auth, seed.origin)
	}

	var (
		mu        sync.Mutex // guards forwarded
		forwarded []http.Header
	)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		forwarded = append(forwarded, r.Header.Clone())
		mu.Unlock()
	}))
	f.Cleanup(up.Close)
	u, err := url.Parse(up.URL + "/k8s/g/c")
	if err != nil {
		f.Fatal(err)
	}
	tr := up.Client().Transport.(*http.Transport).Clone()
	f.Cleanup(tr.CloseIdleConnections)
	p, err := New(Config{Upstream: u, Transport: tr, Credential: func(context.Context) (string, error) { return "real-token", nil }})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, remote, host, auth, origin string) {
		auth = strings.ReplaceAll(auth, "{token}", p.LocalToken())
		r := httptest.NewRequest(http.MethodGet, "https://127.0.0.1/api/v1/pods", nil)
		r.RemoteAddr, r.Host = remote, host
		r.Header = http.Header{
			"Authorization":     {auth},
			"Impersonate-User":  {"admin"},
			"Impersonate-Group": {"system:masters"},
			"X-Forwarded-For":   {"10.0.0.1"},
		}
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		w := httptest.NewRecorder()
		p.ServeHTTP(w, r)
		mu.Lock()
		got := forwarded
		forwarded = nil
		mu.Unlock()

		peerHost, _, perr := net.SplitHostPort(remote)
		peerOK := perr == nil && loopbackAddr(peerHost, false)
		name := host
		if h, _, err := net.SplitHostPort(host); err == nil {
			name = h
		}
		hostOK := loopbackAddr(strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"), true)
		scheme, token, _ := strings.Cut(auth, " ")
		authOK := asciiLower(scheme) == "bearer" && strings.TrimSpace(token) == p.LocalToken()
		originOK := origin == ""
		if u, err := url.Parse(origin); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
			originOK = originOK || loopbackAddr(u.Hostname(), true)
		}

		switch {
		case len(got) > 1:
			t.Fatalf("one request forwarded %d times", len(got))
		case len(got) == 1 && !(peerOK && hostOK && authOK && originOK):
			t.Fatalf("forwarded a request from %q for host %q with Authorization %q, Origin %q", remote, host, auth, origin)
		case len(got) == 0 && remote == "127.0.0.1:50000" && (host == "127.0.0.1:8443" || host == "localhost:8443") && auth == "Bearer "+p.LocalToken() &&
			(origin == "" || origin == "http://localhost:3000"):
			t.Fatalf("a local request was not forwarded: %d %s", w.Code, w.Body)
		case len(got) == 1:
			h := got[0]
			if h.Get("Authorization") != "Bearer real-token" || h.Get("X-Forwarded-For") != "" {
				t.Fatalf("forwarded headers %v", h)
			}
			for k := range h {
				if strings.HasPrefix(k, "Impersonate-") {
					t.Fatalf("forwarded %s", k)
				}
			}
		}
	})
}
