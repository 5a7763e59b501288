package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/authheader"
	"tether.dev/tether/internal/copybuf"
	"tether.dev/tether/internal/identity"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/tunnel"
)

// clusterGateway forwards requests through one tunnel. Each HTTP connection
// the transport makes is one stream on the tunnel; idle ones are reused.
type clusterGateway struct {
	cluster   string
	transport *streamTransport
	proxy     *httputil.ReverseProxy
	// stream is proxy with small copy buffers, for long-lived streams
	// (longStream).
	stream *httputil.ReverseProxy
	logger *slog.Logger
}

// tunnelHost is the Host the agent sees; the agent ignores it.
const tunnelHost = "cluster.tether.invalid"

func newClusterGateway(cluster string, sess *tunnel.Session, m *Metrics, logger *slog.Logger) *clusterGateway {
	g := &clusterGateway{cluster: cluster, logger: logger}
	g.transport = &streamTransport{
		open:        m.countTunnel(func(ctx context.Context) (net.Conn, error) { return sess.Open(ctx) }),
		maxIdle:     64,
		idleTimeout: 90 * time.Second,
		// No response-header timeout: the API server answers watches and
		// upgrades at once, and a slow answer is the API server's to time out.
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:   g.rewrite,
		Transport: g.transport,
		// FlushInterval 0: a response of unknown length (watch, logs -f) is
		// flushed after every write anyway; one of known length goes out in
		// full TLS records rather than a flush per 32 KiB read.
		ErrorHandler: g.error,
		BufferPool:   copybuf.Large,
	}
	stream := *g.proxy
	stream.BufferPool = copybuf.Small
	g.stream = &stream
	return g
}

// longStream reports whether r is a watch or a followed log: a response
// that lives long and mostly waits, copied with a small buffer.
func longStream(r *http.Request) bool { return isWatch(r) || copybuf.Streaming(r) }

func (g *clusterGateway) close() { g.transport.CloseIdleConnections() }

func (g *clusterGateway) rewrite(pr *httputil.ProxyRequest) {
	prefix := "/k8s/" + pr.In.PathValue("group") + "/" + pr.In.PathValue("cluster")
	out := pr.Out.URL
	out.Scheme, out.Host = "http", tunnelHost
	out.Path = ensureSlash(strings.TrimPrefix(pr.In.URL.Path, prefix))
	if pr.In.URL.RawPath != "" {
		out.RawPath = ensureSlash(strings.TrimPrefix(pr.In.URL.RawPath, prefix))
	}
	pr.Out.Host = tunnelHost
	authheader.StripImpersonation(pr.Out.Header)
	// Set here, after hop-by-hop removal, so that a client's
	// "Connection: Tether-Assertion" cannot take it off; any client copy is
	// replaced.
	fwd, _ := pr.In.Context().Value(forwardKey{}).(forward)
	pr.Out.Header.Set(identity.AssertionHeader, fwd.assertion)
	if fwd.dropAuthorization {
		pr.Out.Header.Del("Authorization") // the caller's hub token stays at the hub
	}
}

// forward is what the handler tells rewrite about one request.
type forward struct {
	assertion         string
	dropAuthorization bool
}

type forwardKey struct{}

func (g *clusterGateway) error(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away
	}
	if b := recordOf(r).body; b != nil && b.broken.Load() {
		// The client's body could not be read (malformed chunking, cut
		// short): its fault, not the tunnel's.
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("the request body is malformed or was cut short (%v); send it again whole", err))
		return
	}
	g.logger.Warn("gateway request failed", "cluster", g.cluster, "path", r.URL.Path, "err", err)
	msg := fmt.Sprintf("the tunnel to cluster %s failed during the request: %v; retry", g.cluster, err)
	if errors.Is(err, tunnel.ErrGoAway) || errors.Is(err, net.ErrClosed) {
		msg = fmt.Sprintf("the tunnel to cluster %s closed during the request; the agent reconnects on its own, retry in a few seconds", g.cluster)
	}
	apistatus.Write(w, http.StatusBadGateway, msg)
}

// gateway serves /k8s/{group}/{cluster}/...: kubectl's requests for one
// cluster, forwarded through its agent's tunnel, on this replica or on the
// replica that holds it.
func (h *Hub) gateway(w http.ResponseWriter, r *http.Request) {
	group, name := r.PathValue("group"), r.PathValue("cluster")
	if store.ValidateName(group) != nil || store.ValidateName(name) != nil {
		apistatus.Write(w, http.StatusNotFound, "no such cluster: the gateway path is /k8s/{group}/{cluster}/ with lowercase names")
		return
	}
	if hasDotSegment(r.URL.Path) {
		apistatus.Write(w, http.StatusBadRequest, `the path has a "." or ".." segment (perhaps escaped, as %2e%2e); Kubernetes API paths have none: send the path without them`)
		return
	}
	id := store.ClusterID(group, name)
	aw, r, done := h.startAudit(w, r, id)
	defer done()
	w = aw
	peer, hops, ok := h.fromPeer(w, r)
	if !ok {
		return
	}
	in := via{client: r.RemoteAddr, hops: hops}
	if peer != "" {
		// Forwarded by another replica: the original client, and the
		// request ID the client was given.
		in.client = r.Header.Get(headerPeerClient)
		rec := recordOf(r)
		rec.event.SourceAddr = in.client
		if reqID := r.Header.Get(headerPeerRequestID); reqID != "" {
			rec.event.RequestID = reqID
			w.Header().Set("X-Request-Id", reqID)
		}
	}
	token, ok := authheader.Bearer(r.Header.Get("Authorization"))
	if !ok {
		apistatus.Write(w, http.StatusUnauthorized,
			"no credentials: sign in (tether login) or pass a service-account token of the cluster (tether proxy --token TOKEN)")
		return
	}
	if len(token) > identity.MaxTokenSize {
		// No token of any kind is this large (a service-account token is
		// about 1 KiB): refused here, never carried to the cluster.
		apistatus.Write(w, http.StatusUnauthorized, fmt.Sprintf("your bearer token was refused: it has %d bytes, more than any valid token (at most %d); sign in again (tether login) or pass a service-account token", len(token), identity.MaxTokenSize))
		return
	}
	h.serveCluster(w, r, id, in)
}

// serveCluster sends r through the cluster's tunnel: this replica's, or
// the holding replica's (see findTarget).
func (h *Hub) serveCluster(w http.ResponseWriter, r *http.Request, id string, in via) {
	h.active.Add(1)
	defer h.active.Add(-1)
	if in.attempt == 0 && isWatch(r) {
		e := newWatchEnder(w)
		defer h.watches.add(e)()
		defer e.finish()
		w = e
	}
	t, err := h.findTarget(r.Context(), id, in.hops, false)
	if errors.Is(err, errNoRoute) && h.rt != nil && h.recentlySeen(r.Context(), id) {
		// Its agent was connected a moment ago: it is moving between
		// replicas, and this one has not heard where to yet.
		t, err = h.findTarget(r.Context(), id, in.hops, true)
	}
	switch {
	case errors.Is(err, errNoRoute) && in.hops > 0:
		// The sender's route is stale: it reads it again.
		w.Header().Set(headerRouteMiss, "1")
		apistatus.WriteRetry(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s's tunnel moved to another hub replica; retry", id), time.Second)
		return
	case errors.Is(err, errNoRoute):
		h.offline(w, r, id)
		return
	case err != nil:
		return // the client went away
	case t.local == nil:
		h.forwardToPeer(w, r, id, t, in)
		return
	}
	conn := t.local
	token, _ := authheader.Bearer(r.Header.Get("Authorization")) // checked by gateway
	// The agent forwards only what the hub vouches for.
	a := identity.Assertion{Cluster: id, Mode: identity.ModeToken}
	if h.cfg.Verifier != nil && h.cfg.Verifier.Trusts(token) {
		// A signed-in caller: verified and authorized here, impersonated by
		// the agent. A token that merely claims a trusted issuer and fails
		// is refused, never passed on.
		var denied bool
		if a, denied = h.signedIn(w, r, id, token); denied {
			return
		}
	}
	// Otherwise service-account-token mode: the caller's token goes through
	// and only the API server can judge it.
	rec := recordOf(r)
	if a.Mode == identity.ModeToken {
		rec.setPrincipal("", "kubernetesToken", tokenSubject(token))
		rec.event.AuthMode, rec.event.Reason = "token", "a Kubernetes token, passed to the API server, which judges it"
		h.metrics.authorized(authzModeToken, decisionAllow)
	}
	assertion, err := h.signer.Reuse(a, h.cfg.Now())
	if err != nil {
		h.internalError(w, "sign the request's assertion", err)
		return
	}
	fwd := forward{assertion: assertion, dropAuthorization: a.Mode == identity.ModeImpersonate}
	rec.forwarded, rec.elsewhere = true, false
	proxy := conn.gw.proxy
	if longStream(r) {
		proxy = conn.gw.stream
	}
	// In flight through this replica's tunnel: counted here, where the
	// audit event is recorded, not on a replica that forwarded it.
	defer h.metrics.inFlight(rec.kind)()
	proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), forwardKey{}, fwd)))
}

// recentlySeen reports whether the store says the cluster's agent was
// connected within the offline window.
func (h *Hub) recentlySeen(ctx context.Context, id string) bool {
	c, err := h.cfg.Store.GetCluster(ctx, id)
	return err == nil && c.Enrolled() && !c.Agent.LastSeenAt.IsZero() && h.cfg.Now().Sub(c.Agent.LastSeenAt) < h.cfg.OfflineAfter
}

// offline explains why a cluster cannot be reached right now.
func (h *Hub) offline(w http.ResponseWriter, r *http.Request, id string) {
	group, name, _ := store.ParseClusterID(id)
	c, err := h.cfg.Store.GetCluster(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		apistatus.Write(w, http.StatusNotFound, fmt.Sprintf("cluster %q in group %q is not registered on this hub", name, group))
		return
	}
	if err != nil {
		h.internalError(w, "look up the cluster", err)
		return
	}
	now := h.cfg.Now()
	idle, expired := h.keyExpired(c, now)
	var msg string
	switch {
	case !c.Enrolled():
		msg = "no agent has enrolled yet; install the agent with the cluster's join token"
	case expired:
		msg = h.expiredMessage(c, idle)
	case c.Agent.LastSeenAt.IsZero():
		msg = "its agent enrolled but has never connected; check the agent's logs and that it can reach the hub"
	default:
		msg = fmt.Sprintf("its agent was last seen %s ago (%s); check that the agent is running and can reach the hub",
			now.Sub(c.Agent.LastSeenAt).Round(time.Second), c.Agent.LastSeenAt.UTC().Format(time.RFC3339))
	}
	apistatus.Write(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s/%s is not connected: %s", group, name, msg))
}

// hasDotSegment reports whether the decoded path p has a "." or ".."
// segment. ServeMux redirects such paths to their clean form, but not when
// the dots are escaped (%2e%2e, or .%2F) nor in a CONNECT request: the agent
// would receive a path that, cleaned, climbs out of wherever it is rooted.
func hasDotSegment(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

func ensureSlash(p string) string {
	if !strings.HasPrefix(p, "/") {
		return "/" + p
	}
	return p
}
