package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"

	"tether.dev/tether/hack/rig/node/procpods"
)

const (
	// streamIdleTimeout closes exec, attach and port-forward connections
	// without traffic, as the kubelet's default does.
	streamIdleTimeout = 4 * time.Hour
	// streamCreationTimeout bounds the wait for a client's streams after the
	// upgrade.
	streamCreationTimeout = 30 * time.Second
)

// podRoutes serves the kubelet API paths the apiserver uses. (virtual-kubelet's
// api.PodHandler swaps the port-forward timeouts, so the routes are set up
// here.)
func podRoutes(p *procpods.Provider, pods corev1listers.PodLister) http.Handler {
	r := mux.NewRouter()
	r.StrictSlash(true)
	r.HandleFunc("/pods", api.HandleRunningPods(func(context.Context) ([]*corev1.Pod, error) {
		return pods.List(labels.Everything())
	})).Methods(http.MethodGet)
	r.HandleFunc("/runningpods/", api.HandleRunningPods(p.GetPods)).Methods(http.MethodGet)
	r.HandleFunc("/containerLogs/{namespace}/{pod}/{container}", api.HandleContainerLogs(p.GetContainerLogs)).Methods(http.MethodGet)
	r.HandleFunc("/exec/{namespace}/{pod}/{container}", api.HandleContainerExec(p.RunInContainer,
		api.WithExecStreamIdleTimeout(streamIdleTimeout),
		api.WithExecStreamCreationTimeout(streamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/attach/{namespace}/{pod}/{container}", api.HandleContainerAttach(p.AttachToContainer,
		api.WithExecStreamIdleTimeout(streamIdleTimeout),
		api.WithExecStreamCreationTimeout(streamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	r.HandleFunc("/portForward/{namespace}/{pod}", api.HandlePortForward(p.PortForward,
		api.WithPortForwardStreamIdleTimeout(streamIdleTimeout),
		api.WithPortForwardCreationTimeout(streamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	stats := api.HandlePodStatsSummary(p.GetStatsSummary)
	r.HandleFunc("/stats/summary", stats).Methods(http.MethodGet)
	r.HandleFunc(api.MetricsResourceRouteSuffix, api.HandlePodMetricsResource(p.GetMetricsResource)).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, "no such kubelet API path: "+r.URL.Path)
	})
	return r
}

type serverConfig struct {
	addr     string
	certFile string
	keyFile  string
	handler  http.Handler
}

// server serves the kubelet API over TLS.
type server struct {
	cfg serverConfig
	tls *tls.Config
	log *slog.Logger
}

func newServer(cfg serverConfig, logger *slog.Logger) (*server, error) {
	cert, err := tls.LoadX509KeyPair(cfg.certFile, cfg.keyFile)
	if err != nil {
		return nil, fmt.Errorf("load serving certificate: %w", err)
	}
	return &server{
		cfg: cfg,
		tls: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Certificates are verified by the authenticator (against the
			// client CA), so that token callers can connect too.
			ClientAuth: tls.RequestClientCert,
			// SPDY and WebSocket upgrades need HTTP/1.1.
			NextProtos: []string{"http/1.1"},
		},
		log: logger,
	}, nil
}

// run serves until ctx is done, then shuts down: it waits up to 5 s for
// plain requests, closes upgraded (exec, attach, port-forward) connections,
// and returns once the server stopped.
func (s *server) run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	tracked := &trackingListener{Listener: ln, conns: make(map[net.Conn]struct{})}
	srv := &http.Server{
		Handler:           s.cfg.handler,
		ReadHeaderTimeout: 10 * time.Second, // also bounds the TLS handshake
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(tls.NewListener(tracked, s.tls)) }()

	select {
	case err := <-served:
		return fmt.Errorf("serve kubelet API: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx)
	tracked.closeAll()
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve kubelet API: %w", err)
	}
	return nil
}

// trackingListener remembers its open connections so that hijacked ones,
// which http.Server.Shutdown leaves alone, can be closed.
type trackingListener struct {
	net.Listener

	mu    sync.Mutex // guards conns
	conns map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = struct{}{}
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	conns := make([]net.Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

type trackedConn struct {
	net.Conn
	l    *trackingListener
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		delete(c.l.conns, c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}
