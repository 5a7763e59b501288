package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"tether.dev/tether/internal/apistatus"
	"tether.dev/tether/internal/copybuf"
)

// Replica-to-replica forwarding. A request for a cluster whose tunnel
// another replica holds is passed to that replica whole (the caller's
// credentials included: the holder authenticates and authorizes it as if it
// had come directly), over HTTPS to the URL the holder published in the
// store, verified against the hub's own certificate, with a header that
// proves the sender is a replica of the same hub. Only such a request may
// say who the original client was, and it is never forwarded again.
const (
	// headerPeer carries the sending replica's proof (peerProof).
	headerPeer = "Tether-Peer"
	// headerPeerClient is the original client's address, as the sending
	// replica saw it.
	headerPeerClient = "Tether-Peer-Client"
	// headerPeerHops counts the replicas that forwarded the request.
	headerPeerHops = "Tether-Peer-Hops"
	// headerPeerRequestID is the request's ID at the sending replica, so
	// that both replicas' logs and the audit trail name it alike.
	headerPeerRequestID = "Tether-Peer-Request-Id"
	// headerRouteMiss marks a holder's answer that it no longer holds the
	// tunnel: the sender reads the route again.
	headerRouteMiss = "Tether-Route-Miss"
	// peerProofMaxAge bounds how old (or how far ahead) a proof's time may be.
	peerProofMaxAge = time.Minute
)

// peerKeyFor derives the key replicas prove themselves to each other with
// from the assertion key, which every replica of a hub has.
func peerKeyFor(assertionKey ed25519.PrivateKey) []byte {
	m := hmac.New(sha256.New, assertionKey.Seed())
	m.Write([]byte("tether replica-to-replica v1"))
	return m.Sum(nil)
}

// peerProof is "REPLICA;UNIXTIME;MAC", the MAC over the first two.
func (h *Hub) peerProof(now time.Time) string {
	msg := h.cfg.Replica + ";" + strconv.FormatInt(now.Unix(), 10)
	m := hmac.New(sha256.New, h.peerKey)
	m.Write([]byte(msg))
	return msg + ";" + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkPeerProof verifies a peer's proof at now, returning the sending
// replica's name.
func (h *Hub) checkPeerProof(proof string, now time.Time) (string, error) {
	i := strings.LastIndexByte(proof, ';')
	if i < 0 {
		return "", errors.New("malformed")
	}
	msg, mac := proof[:i], proof[i+1:]
	got, err := base64.RawURLEncoding.DecodeString(mac)
	if err != nil {
		return "", errors.New("malformed")
	}
	m := hmac.New(sha256.New, h.peerKey)
	m.Write([]byte(msg))
	if !hmac.Equal(got, m.Sum(nil)) {
		return "", errors.New("not signed by a replica of this hub")
	}
	name, ts, _ := strings.Cut(msg, ";")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", errors.New("malformed")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > peerProofMaxAge || d < -peerProofMaxAge {
		return "", fmt.Errorf("made %s from now: check the replicas' clocks", d.Round(time.Second))
	}
	return name, nil
}

// fromPeer checks whether r was forwarded by another replica: it returns
// the replica and how many replicas forwarded r (0 for a client's
// request). A request whose proof fails has been answered (ok false). It
// removes the peer headers of a request that is not a peer's, so nothing
// downstream trusts them.
func (h *Hub) fromPeer(w http.ResponseWriter, r *http.Request) (peer string, hops int, ok bool) {
	proof := r.Header.Get(headerPeer)
	if proof == "" || h.peerKey == nil {
		for _, k := range []string{headerPeer, headerPeerClient, headerPeerHops, headerPeerRequestID} {
			r.Header.Del(k)
		}
		return "", 0, true
	}
	name, err := h.checkPeerProof(proof, h.cfg.Now())
	if err != nil {
		h.logger.Warn("replica proof refused", "remote_addr", r.RemoteAddr, "err", err)
		apistatus.Write(w, http.StatusUnauthorized, "the "+headerPeer+" header is for the hub's replicas only, and this one was refused: "+err.Error())
		return "", 0, false
	}
	hops, err = strconv.Atoi(r.Header.Get(headerPeerHops))
	if err != nil || hops < 1 {
		hops = 1
	}
	return name, hops, true
}

// via is how a request reached this replica.
type via struct {
	// client is the original client's address.
	client string
	// hops counts the replicas that forwarded it here; attempt, the routes
	// this replica tried before.
	hops, attempt int
}

// newPeerProxy builds the reverse proxy to other replicas: HTTP/1.1, so
// upgrades (exec, attach, port-forward) pass, with idle connections kept
// for reuse; no total deadline, as for the tunnels.
func (h *Hub) newPeerProxy(tlsConfig *tls.Config) *httputil.ReverseProxy {
	transport := &http.Transport{
		Proxy:               nil, // replicas reach each other directly
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     tlsConfig.Clone(),
		TLSHandshakeTimeout: 5 * time.Second,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{}, // HTTP/1.1 only
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	h.peerTransport = transport
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			to, _ := pr.In.Context().Value(peerTargetKey{}).(*url.URL)
			pr.Out.URL.Scheme, pr.Out.URL.Host = to.Scheme, to.Host
			pr.Out.Host = to.Host
			// Set after hop-by-hop removal, replacing any client copy.
			f, _ := pr.In.Context().Value(peerForwardKey{}).(peerForward)
			pr.Out.Header.Set(headerPeer, h.peerProof(h.cfg.Now()))
			pr.Out.Header.Set(headerPeerClient, f.in.client)
			pr.Out.Header.Set(headerPeerHops, strconv.Itoa(f.in.hops+1))
			pr.Out.Header.Set(headerPeerRequestID, recordOf(pr.In).event.RequestID)
		},
		Transport: transport,
		// FlushInterval 0: a response of unknown length (watch, logs -f) is
		// flushed after every write anyway; one of known length goes out in
		// full TLS records rather than a flush per 32 KiB read.
		ModifyResponse: h.peerResponse,
		ErrorHandler:   h.peerError,
		BufferPool:     copybuf.Large,
	}
}

type peerTargetKey struct{}

// peerForward carries one request to the replica holding its cluster's
// tunnel.
type peerForward struct {
	cluster string
	peer    string
	// in is how the request reached this replica.
	in via
}

type peerForwardKey struct{}

// forwardToPeer passes r to the holding replica t.
func (h *Hub) forwardToPeer(w http.ResponseWriter, r *http.Request, cluster string, t target, via via) {
	u, err := url.Parse(t.peerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		h.logger.Error("replica has an unusable URL", "replica", t.peer, "url", t.peerURL)
		h.rt.markSuspect(t.peer, h.cfg.Now().Add(h.cfg.ReplicaLease))
		apistatus.WriteRetry(w, http.StatusServiceUnavailable, fmt.Sprintf("the hub replica holding cluster %s's tunnel cannot be reached; retry", cluster), time.Second)
		return
	}
	rec := recordOf(r)
	rec.forwarded, rec.elsewhere = false, true // the holder records it
	ctx := context.WithValue(r.Context(), peerTargetKey{}, u)
	ctx = context.WithValue(ctx, peerForwardKey{}, peerForward{cluster: cluster, peer: t.peer, in: via})
	proxy := h.peerProxy
	if longStream(r) {
		proxy = h.peerStream
	}
	proxy.ServeHTTP(w, r.WithContext(ctx))
}

// errRouteMiss: the replica a request was forwarded to does not hold the
// cluster's tunnel (any more).
var errRouteMiss = errors.New("the replica does not hold the tunnel")

// peerResponse reads the route again when the holder says it no longer
// holds the tunnel, and has the request routed again (see peerError).
func (h *Hub) peerResponse(resp *http.Response) error {
	if resp.Header.Get(headerRouteMiss) != "" {
		f, _ := resp.Request.Context().Value(peerForwardKey{}).(peerForward)
		h.rt.forget(f.cluster, f.peer, h.cfg.Now())
		h.changes.add(f.cluster) // read it again
		if f.in.attempt == 0 && replayable(resp.Request) {
			return errRouteMiss
		}
	}
	resp.Header.Del(headerRouteMiss)
	return nil
}

// replayable reports whether a request can be sent again: it has no body.
func replayable(out *http.Request) bool { return out.Body == nil || out.Body == http.NoBody }

// peerError handles a forward that failed before the holder answered
// (out is the request as forwarded). If the holder could not be reached at
// all, or said it does not hold the tunnel, the request is routed again
// (the agent is likely connecting to another replica), once, when it has
// no body to replay.
func (h *Hub) peerError(w http.ResponseWriter, out *http.Request, err error) {
	if out.Context().Err() != nil {
		return // the client went away
	}
	f, _ := out.Context().Value(peerForwardKey{}).(peerForward)
	rec := recordOf(out)
	rec.elsewhere = false // the holder never answered: this replica records it
	if rec.body != nil && rec.body.broken.Load() {
		apistatus.Write(w, http.StatusBadRequest, fmt.Sprintf("the request body is malformed or was cut short (%v); send it again whole", err))
		return
	}
	var op *net.OpError
	unreachable := errors.As(err, &op) && op.Op == "dial"
	if unreachable {
		h.rt.markSuspect(f.peer, h.cfg.Now().Add(h.cfg.ReplicaLease))
	}
	if (unreachable || errors.Is(err, errRouteMiss)) && f.in.attempt == 0 && replayable(out) {
		h.logger.Info("forward to replica missed; routing again", "replica", f.peer, "cluster", f.cluster, "err", err)
		for _, k := range []string{headerPeer, headerPeerClient, headerPeerHops, headerPeerRequestID} {
			out.Header.Del(k)
		}
		again := f.in
		again.attempt++
		h.serveCluster(w, out, f.cluster, again)
		return
	}
	h.logger.Warn("forward to replica failed", "replica", f.peer, "cluster", f.cluster, "unreachable", unreachable, "err", err)
	if errors.Is(err, errRouteMiss) {
		apistatus.WriteRetry(w, http.StatusServiceUnavailable, fmt.Sprintf("cluster %s's tunnel moved to another hub replica; retry", f.cluster), time.Second)
		return
	}
	apistatus.WriteRetry(w, http.StatusBadGateway, fmt.Sprintf("the hub replica holding cluster %s's tunnel failed during the request: %v; retry", f.cluster, err), time.Second)
}
