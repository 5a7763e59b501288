package tunnel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// Subprotocol is the WebSocket subprotocol of the tunnel. Both sides insist
// on it, so a tunnel never runs against something else by accident.
const Subprotocol = "tether.tunnel.v1"

// DefaultHandshakeTimeout bounds Dial when DialConfig.HandshakeTimeout is zero.
const DefaultHandshakeTimeout = 15 * time.Second

// maxHandshakeMessage caps HandshakeError.Message, in bytes.
const maxHandshakeMessage = 512

// ErrNotTunnel means the peer answered the upgrade but does not speak
// Subprotocol.
var ErrNotTunnel = errors.New("tunnel: peer does not speak " + Subprotocol)

// Accept upgrades r, a request the caller has already authenticated, to a
// tunnel. The caller (the hub) is the side that opens streams. On error
// Accept has written a response to w; refusals are Status JSON as written by
// Refuse. After success w and r must no longer be used: the connection
// belongs to the Session, which closes it.
func Accept(w http.ResponseWriter, r *http.Request, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		Refuse(w, http.StatusInternalServerError, "the tunnel endpoint is misconfigured")
		return nil, err
	}
	if !offersSubprotocol(r.Header) {
		Refuse(w, http.StatusBadRequest, "expected a WebSocket upgrade offering the subprotocol "+Subprotocol)
		return nil, fmt.Errorf("%w: the client did not offer it", ErrNotTunnel)
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		return nil, fmt.Errorf("tunnel: accept: %w", err)
	}
	sess, err := newSession(ws, true, cfg)
	if err != nil {
		return nil, err
	}
	sess.handshake = r.Header.Clone()
	return sess, nil
}

// offersSubprotocol reports whether the Sec-WebSocket-Protocol headers of a
// handshake request list Subprotocol.
func offersSubprotocol(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == Subprotocol {
				return true
			}
		}
	}
	return false
}

// DialConfig says where and how the agent connects.
type DialConfig struct {
	// URL is the hub's tunnel endpoint, wss://host/path (ws:// without TLS,
	// for tests). Required.
	URL string

	// Header is sent with the upgrade request; it carries the agent's
	// credentials (Authorization). nil sends none.
	Header http.Header

	// Client sends the upgrade request. Its Transport decides the proxy
	// (http.ProxyFromEnvironment honours HTTPS_PROXY and NO_PROXY) and the
	// TLS roots (a custom CA bundle). nil means http.DefaultClient.
	Client *http.Client

	// HandshakeTimeout bounds the dial, the TLS handshake and the upgrade,
	// proxy included. Zero means 15s. Must not be negative.
	HandshakeTimeout time.Duration

	// Config tunes the session.
	Config
}

// Dial connects to the hub and returns the session; the caller (the agent)
// is the side that accepts streams. When the hub answers the upgrade with
// anything but 101 Switching Protocols, the error is a *HandshakeError.
// ctx bounds only the handshake; the session lives until it is closed.
func Dial(ctx context.Context, cfg DialConfig) (*Session, error) {
	scfg, err := cfg.Config.withDefaults()
	if err != nil {
		return nil, err
	}
	switch {
	case cfg.HandshakeTimeout < 0:
		return nil, fmt.Errorf("tunnel: config: HandshakeTimeout must not be negative, got %s", cfg.HandshakeTimeout)
	case cfg.HandshakeTimeout == 0:
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("tunnel: config: URL: %w", err)
	}
	switch u.Scheme {
	case "wss", "ws", "https", "http":
	default:
		return nil, fmt.Errorf("tunnel: config: URL %q: scheme must be wss or ws", u.Redacted())
	}

	hctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel() // the upgraded connection does not depend on it
	client := http.DefaultClient
	if cfg.Client != nil {
		client = cfg.Client
	}
	// The upgraded connection writes whole WebSocket frames (coalesce.go).
	coalescing := *client
	coalescing.Transport = coalescingTransport{rt: client.Transport}
	if client.Transport == nil {
		coalescing.Transport = coalescingTransport{rt: http.DefaultTransport}
	}
	ws, resp, err := websocket.Dial(hctx, u.String(), &websocket.DialOptions{
		HTTPClient:   &coalescing,
		HTTPHeader:   cfg.Header,
		Subprotocols: []string{Subprotocol},
	})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, newHandshakeError(resp)
		}
		if resp != nil {
			return nil, fmt.Errorf("tunnel: dial %s: %w: %w", u.Redacted(), ErrNotTunnel, err)
		}
		return nil, fmt.Errorf("tunnel: dial %s: %w", u.Redacted(), err)
	}
	if ws.Subprotocol() != Subprotocol {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("tunnel: dial %s: %w: the server did not select it", u.Redacted(), ErrNotTunnel)
	}
	sess, err := newSession(ws, false, scfg)
	if err != nil {
		return nil, err
	}
	sess.handshake = resp.Header.Clone()
	return sess, nil
}

// HandshakeError is the hub's refusal of the upgrade: any answer but 101.
// 401, 403 and 410 are refusals that retrying with the same credentials will
// not change; 429 and 5xx are transient.
type HandshakeError struct {
	StatusCode int
	// Message is the message field of a Status JSON body, or else the
	// body's text; control characters removed, at most 512 bytes.
	Message string
}

func (e *HandshakeError) Error() string {
	what := "the hub refused the tunnel"
	if e.StatusCode < 400 {
		what = "not a tunnel endpoint (expected 101 Switching Protocols)"
	}
	s := fmt.Sprintf("tunnel: %s: %d %s", what, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

func newHandshakeError(resp *http.Response) *HandshakeError {
	// coder/websocket has already read at most 1 KiB of the body into
	// memory; the limit here only keeps that true if it changes.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return &HandshakeError{StatusCode: resp.StatusCode, Message: handshakeMessage(body)}
}

// status is the subset of a Kubernetes Status object the tunnel writes and
// reads.
type status struct {
	Kind       string   `json:"kind"`
	APIVersion string   `json:"apiVersion"`
	Metadata   struct{} `json:"metadata"`
	Status     string   `json:"status"`
	Message    string   `json:"message"`
	Reason     string   `json:"reason,omitempty"`
	Code       int      `json:"code"`
}

// handshakeMessage extracts a printable message from a refusal body.
func handshakeMessage(body []byte) string {
	var st status
	if err := json.Unmarshal(body, &st); err == nil && st.Message != "" {
		return cleanMessage(st.Message)
	}
	return cleanMessage(string(body))
}

// cleanMessage makes text from the network safe to print in one log line:
// valid UTF-8, no control characters, runs of white space as one space, at
// most maxHandshakeMessage bytes.
func cleanMessage(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= maxHandshakeMessage {
		return s
	}
	const ellipsis = "…"
	cut := maxHandshakeMessage - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

// Refuse answers a tunnel upgrade request with code and a Kubernetes-style
// Status body carrying message, which Dial returns as a *HandshakeError.
// The message is shown to the agent's operator: say what to do, and never
// include secrets.
func Refuse(w http.ResponseWriter, code int, message string) {
	body, err := json.Marshal(status{
		Kind:       "Status",
		APIVersion: "v1",
		Status:     "Failure",
		Message:    message,
		Reason:     statusReason(code),
		Code:       code,
	})
	if err != nil { // cannot happen: every field marshals
		body = []byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// statusReason is the Kubernetes StatusReason of the codes a hub refuses a
// tunnel with.
func statusReason(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "BadRequest"
	case http.StatusUnauthorized:
		return "Unauthorized"
	case http.StatusForbidden:
		return "Forbidden"
	case http.StatusNotFound:
		return "NotFound"
	case http.StatusConflict:
		return "Conflict"
	case http.StatusGone:
		return "Gone"
	case http.StatusTooManyRequests:
		return "TooManyRequests"
	case http.StatusInternalServerError:
		return "InternalError"
	case http.StatusServiceUnavailable:
		return "ServiceUnavailable"
	}
	return ""
}
