package bench

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is the trivial HTTPS server the data-path figures are measured
// against: it stands where the API server would, answers at once, and
// serves HTTP/1.1 and HTTP/2 (up to 1000 streams per connection, as
// kube-apiserver does).
//
//	/version               a Kubernetes version object (the agent's probe)
//	/bulk?bytes=N          N bytes (Content-Length set), written 32 KiB at a time
//	?watch=true            headers and one event at once, then nothing until the client leaves
//	anything else          a small JSON object (SmallBody)
type Backend struct {
	URL    string // https://127.0.0.1:port
	CAPEM  []byte // its self-signed certificate
	Pool   *x509.CertPool
	srv    *http.Server
	l      net.Listener
	quit   chan struct{}
	once   sync.Once
	served atomic.Int64

	// Watching is how many /watch requests are being held right now.
	Watching atomic.Int64
}

// SmallBody is what the backend answers small requests with: about the
// size of a small Kubernetes object.
var SmallBody = []byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"small","namespace":"bench","uid":"5a6d3e4c-8f0b-4b8e-9d1e-2f3a4b5c6d7e","resourceVersion":"12345","creationTimestamp":"2026-11-27T00:00:00Z"},"data":{"key":"value"}}`)

var versionBody = []byte(`{"major":"1","minor":"37","gitVersion":"v1.37.2-bench","platform":"linux/amd64"}`)

var bulkChunk = make([]byte, 32<<10)

// StartBackend starts the backend on a free loopback port.
func StartBackend() (*Backend, error) {
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Backend{URL: "https://" + l.Addr().String(), CAPEM: certPEM, Pool: x509.NewCertPool(), l: l, quit: make(chan struct{})}
	b.Pool.AppendCertsFromPEM(certPEM)
	h2 := &http.HTTP2Config{MaxConcurrentStreams: 1000}
	b.srv = &http.Server{
		Handler:   b,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
		HTTP2:     h2,
		ErrorLog:  nil,
	}
	b.srv.SetKeepAlivesEnabled(true)
	go b.srv.ServeTLS(l, "", "")
	return b, nil
}

// Served is how many requests the backend has answered.
func (b *Backend) Served() int64 { return b.served.Load() }

// Close stops the backend and ends the held watches.
func (b *Backend) Close() {
	b.once.Do(func() { close(b.quit) })
	_ = b.srv.Close()
}

func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.served.Add(1)
	if r.URL.Query().Get("watch") == "true" {
		b.watch(w, r)
		return
	}
	switch r.URL.Path {
	case "/version":
		w.Header().Set("Content-Type", "application/json")
		w.Write(versionBody)
	case "/bulk":
		n, err := strconv.ParseInt(r.URL.Query().Get("bytes"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "bytes=N wanted", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		for n > 0 {
			k := min(n, int64(len(bulkChunk)))
			if _, err := w.Write(bulkChunk[:k]); err != nil {
				return
			}
			n -= k
		}
	default:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(SmallBody)))
		w.Write(SmallBody)
	}
}

// watch answers a watch: headers and one event at once, then nothing until
// the client leaves.
func (b *Backend) watch(w http.ResponseWriter, r *http.Request) {
	b.Watching.Add(1)
	defer b.Watching.Add(-1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, `{"type":"ADDED","object":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"w"}}}`+"\n")
	http.NewResponseController(w).Flush()
	select {
	case <-r.Context().Done():
	case <-b.quit:
	}
}

// Kubeconfig writes a kubeconfig for the backend (a token the backend
// ignores) to path, for the agent.
func (b *Backend) Kubeconfig(path string) error {
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: bench
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: bench
  user:
    token: bench-backend-token
contexts:
- name: bench
  context: {cluster: bench, user: bench}
current-context: bench
`, b.URL, encodeB64(b.CAPEM))
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// selfSigned makes an ECDSA P-256 certificate for 127.0.0.1 and localhost.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "bench-backend"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, certPEM, nil
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
