package hub

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// newStreamTransport returns a streamTransport whose streams are TCP
// connections to srv, and the count of streams it opened.
func newStreamTransport(t *testing.T, srv *httptest.Server) (*streamTransport, *atomic.Int64) {
	t.Helper()
	var opened atomic.Int64
	st := &streamTransport{
		open: func(ctx context.Context) (net.Conn, error) {
			opened.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
		},
		maxIdle:     2,
		idleTimeout: time.Minute,
	}
	t.Cleanup(st.CloseIdleConnections)
	return st, &opened
}

func get(t *testing.T, rt http.RoundTripper, ctx context.Context, method, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rt.RoundTrip(req)
}

func TestStreamTransport(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/block":
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			select {
			case <-block:
			case <-r.Context().Done():
			}
		case "/echo":
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
		default:
			io.WriteString(w, "small "+r.Method)
		}
	}))
	defer srv.Close()
	defer close(block)
	ctx := t.Context()

	t.Run("reuse", func(t *testing.T) {
		st, opened := newStreamTransport(t, srv)
		for range 3 {
			resp, err := get(t, st, ctx, "GET", srv.URL+"/small")
			if err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || string(b) != "small GET" {
				t.Fatalf("body %q, %v", b, err)
			}
		}
		for _, path := range []string{"/empty", "/small"} { // no body to read: free at once
			resp, err := get(t, st, ctx, "HEAD", srv.URL+path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		if n := opened.Load(); n != 1 {
			t.Errorf("%d streams opened for requests one after another, want 1", n)
		}
	})

	t.Run("body", func(t *testing.T) {
		st, _ := newStreamTransport(t, srv)
		req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/echo", strings.NewReader("hello"))
		resp, err := st.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" {
			t.Errorf("echo: %q", b)
		}
	})

	t.Run("closed early", func(t *testing.T) {
		st, opened := newStreamTransport(t, srv)
		resp, err := get(t, st, ctx, "GET", srv.URL+"/big")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Read(make([]byte, 10))
		resp.Body.Close() // not read to the end: the stream cannot carry another response
		resp, err = get(t, st, ctx, "GET", srv.URL+"/small")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "small GET" || opened.Load() != 2 {
			t.Errorf("after a body closed early: %q on stream %d, want a second stream", b, opened.Load())
		}
	})

	t.Run("watch closed", func(t *testing.T) {
		st, _ := newStreamTransport(t, srv)
		resp, err := get(t, st, ctx, "GET", srv.URL+"/block")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); io.Copy(io.Discard, resp.Body) }()
		time.Sleep(20 * time.Millisecond) // the reader blocks on the stream
		closed := make(chan struct{})
		go func() { defer close(closed); resp.Body.Close() }()
		select {
		case <-closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Close of a held response body did not return")
		}
		<-done
	})

	t.Run("cancel", func(t *testing.T) {
		st, _ := newStreamTransport(t, srv)
		cctx, cancel := context.WithCancel(ctx)
		resp, err := get(t, st, cctx, "GET", srv.URL+"/block")
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(20*time.Millisecond, cancel)
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Error("a held response read to the end after its request was canceled")
		}
		if len(st.idle) != 0 {
			t.Errorf("%d idle streams after a canceled request, want 0", len(st.idle))
		}
	})

	t.Run("retry on a stream the server closed", func(t *testing.T) {
		st, opened := newStreamTransport(t, srv)
		resp, err := get(t, st, ctx, "GET", srv.URL+"/small")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		srv.CloseClientConnections() // the idle stream is dead now
		time.Sleep(20 * time.Millisecond)
		resp, err = get(t, st, ctx, "GET", srv.URL+"/small")
		if err != nil {
			t.Fatalf("GET after the server closed the idle stream: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "small GET" || opened.Load() != 2 {
			t.Errorf("%q on stream %d, want a retry on a second stream", b, opened.Load())
		}
	})

	t.Run("idle bound", func(t *testing.T) {
		st, _ := newStreamTransport(t, srv)
		var resps []*http.Response
		for range 4 { // four at once: four streams
			resp, err := get(t, st, ctx, "GET", srv.URL+"/small")
			if err != nil {
				t.Fatal(err)
			}
			resps = append(resps, resp)
		}
		for _, resp := range resps {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if len(st.idle) != st.maxIdle {
			t.Errorf("%d idle streams kept, want maxIdle %d", len(st.idle), st.maxIdle)
		}
		st.CloseIdleConnections()
		if len(st.idle) != 0 {
			t.Errorf("%d idle streams after CloseIdleConnections", len(st.idle))
		}
	})
}

func TestStreamTransportUpgrade(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello ")
		line, _ := brw.ReadString('\n')
		io.WriteString(conn, line)
	}))
	defer srv.Close()
	st, _ := newStreamTransport(t, srv)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/up", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := st.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("the body of a 101 is a %T, not an io.ReadWriteCloser", resp.Body)
	}
	defer rwc.Close()
	if _, ok := rwc.(interface{ CloseWrite() error }); !ok {
		t.Error("the body of a 101 cannot half-close")
	}
	if _, err := io.WriteString(rwc, "world\n"); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(rwc).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if got != "hello world\n" {
		t.Errorf("through the upgraded stream: %q", got)
	}
}
