package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
)

func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") + "/tunnel" }

func dial(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	s, err := Dial(ctx, DialConfig{URL: url, HandshakeTimeout: hang})
	if err == nil {
		_ = s.Close()
	}
	return err
}

func TestHandshakeRefused(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    *HandshakeError
	}{
		{
			name: "gone, Status body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				Refuse(w, http.StatusGone, `cluster "prod" was deleted from the hub; remove this agent`)
			},
			want: &HandshakeError{StatusCode: http.StatusGone, Message: `cluster "prod" was deleted from the hub; remove this agent`},
		},
		{
			name: "unauthorized, plain text",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "no credentials", http.StatusUnauthorized)
			},
			want: &HandshakeError{StatusCode: http.StatusUnauthorized, Message: "no credentials"},
		},
		{
			name: "unavailable, JSON that is not a Status",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"error":"draining"}`)
			},
			want: &HandshakeError{StatusCode: http.StatusServiceUnavailable, Message: `{"error":"draining"}`},
		},
		{
			name: "forbidden, no body",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusForbidden)
			},
			want: &HandshakeError{StatusCode: http.StatusForbidden},
		},
		{
			name: "control characters",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				Refuse(w, http.StatusForbidden, "revoked\x1b[2J\r\nfake log line\u202e")
			},
			want: &HandshakeError{StatusCode: http.StatusForbidden, Message: "revoked [2J fake log line"},
		},
		{
			name: "not a tunnel endpoint",
			handler: func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, "<html>\n  <body>Welcome</body>\n</html>\n")
			},
			want: &HandshakeError{StatusCode: http.StatusOK, Message: "<html> <body>Welcome</body> </html>"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			err := dial(wsURL(srv.URL))
			var got *HandshakeError
			if !errors.As(err, &got) {
				t.Fatalf("got %v, want a *HandshakeError", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestHandshakeErrorMessage(t *testing.T) {
	tests := []struct {
		name string
		err  *HandshakeError
		want string
	}{
		{
			name: "refused",
			err:  &HandshakeError{StatusCode: 410, Message: "cluster deleted"},
			want: "tunnel: the hub refused the tunnel: 410 Gone: cluster deleted",
		},
		{
			name: "not a tunnel",
			err:  &HandshakeError{StatusCode: 200},
			want: "tunnel: not a tunnel endpoint (expected 101 Switching Protocols): 200 OK",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.err.Error()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestNotTunnel: a WebSocket server that does not select the subprotocol
// is not a hub.
func TestNotTunnel(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		_ = ws.CloseNow()
	}))
	defer srv.Close()
	if err := dial(wsURL(srv.URL)); !errors.Is(err, ErrNotTunnel) {
		t.Errorf("got %v, want %v", err, ErrNotTunnel)
	}
}

// TestAcceptRequiresSubprotocol: the hub refuses a client that does not
// offer the subprotocol, with a Status body.
func TestAcceptRequiresSubprotocol(t *testing.T) {
	acceptErr := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Config{})
		if err == nil {
			_ = s.Close()
		}
		acceptErr <- err
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, wsURL(srv.URL), nil)
	if err == nil {
		_ = ws.CloseNow()
		t.Fatal("dial without the subprotocol succeeded")
	}
	got := newHandshakeError(resp)
	want := &HandshakeError{StatusCode: http.StatusBadRequest, Message: "expected a WebSocket upgrade offering the subprotocol " + Subprotocol}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := <-acceptErr; !errors.Is(err, ErrNotTunnel) {
		t.Errorf("Accept: got %v, want %v", err, ErrNotTunnel)
	}
}

// TestHandshakeTimeout: a server that accepts TCP and never answers.
func TestHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	defer func() {
		ln.Close()
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
	}()

	_, err = Dial(context.Background(), DialConfig{URL: "ws://" + ln.Addr().String() + "/tunnel", HandshakeTimeout: 50 * time.Millisecond})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want %v", err, context.DeadlineExceeded)
	}
}

// TestHandshakeContextOutlived: the context passed to Dial bounds only the
// handshake; cancelling it later does not end the session.
func TestHandshakeContextOutlived(t *testing.T) {
	accepted := make(chan *Session, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Config{})
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- s
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	agent, err := Dial(ctx, DialConfig{URL: wsURL(srv.URL), Client: srv.Client()})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	hub := <-accepted
	defer hub.Close()
	serveEcho(t, agent)
	roundTrip(t, open(t, hub), "after the dial context ended")
}

func TestDialConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		cfg  DialConfig
	}{
		{name: "no URL", cfg: DialConfig{}},
		{name: "https scheme is fine but ftp is not", cfg: DialConfig{URL: "ftp://hub.example/tunnel"}},
		{name: "negative handshake timeout", cfg: DialConfig{URL: "wss://hub.example/tunnel", HandshakeTimeout: -1}},
		{name: "bad session config", cfg: DialConfig{URL: "wss://hub.example/tunnel", Config: Config{MaxStreamWindow: 1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Dial(context.Background(), tt.cfg); err == nil {
				t.Error("got no error")
			}
		})
	}
}

// TestTextMessage: a text message on the tunnel is a protocol error that
// ends the session.
func TestTextMessage(t *testing.T) {
	accepted := make(chan *Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Config{})
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- s
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(srv.URL), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	hub := <-accepted
	defer hub.Close()
	if err := ws.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	ws.CloseRead(ctx) // answers the hub's close frame
	waitClosed(t, "the session to end", hub.Done())
	if err := hub.Err(); err == nil || !strings.Contains(err.Error(), "unexpected frame type") {
		t.Errorf("Err: got %v, want the unexpected text message", err)
	}
}

func TestCleanMessage(t *testing.T) {
	long := strings.Repeat("é", maxHandshakeMessage) // 2 bytes a rune
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "plain", in: "  cluster deleted \n", want: "cluster deleted"},
		{name: "invalid UTF-8", in: "a\xffb", want: "a\uFFFDb"},
		{name: "controls", in: "a\x00b\tc\u0085d", want: "a b c d"},
		{name: "long, cut at a rune boundary", in: long, want: strings.Repeat("é", (maxHandshakeMessage-len("…"))/2) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, cleanMessage(tt.in)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzHandshakeMessage(f *testing.F) {
	f.Add([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"cluster deleted","reason":"Gone","code":410}`))
	f.Add([]byte(`{"message":"` + strings.Repeat("x", 2000) + `"}`))
	f.Add([]byte("<html>not a hub</html>"))
	f.Add([]byte("\xff\xfe\x00\x1b[2J"))
	f.Add([]byte(`{"message":"\u202e\u0000"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		msg := handshakeMessage(body)
		if len(msg) > maxHandshakeMessage {
			t.Errorf("message of %d bytes, want at most %d", len(msg), maxHandshakeMessage)
		}
		if !utf8.ValidString(msg) {
			t.Errorf("message %q is not valid UTF-8", msg)
		}
		if strings.IndexFunc(msg, unicode.IsControl) >= 0 || strings.TrimSpace(msg) != msg {
			t.Errorf("message %q has control characters or outer space", msg)
		}
	})
}

func TestHandshakeHeader(t *testing.T) {
	hub, agent := newPair(t, pairOptions{tls: true})
	got := []string{agent.HandshakeHeader().Get("X-Test-Hub"), hub.HandshakeHeader().Get("X-Test-Agent")}
	if diff := cmp.Diff([]string{"hub-says", "agent-says"}, got); diff != "" {
		t.Errorf("headers each side saw of the other's upgrade (-want +got):\n%s", diff)
	}
}
