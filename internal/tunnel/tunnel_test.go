package tunnel

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var transports = []struct {
	name string
	tls  bool
}{
	{name: "tls", tls: true},
	{name: "plain", tls: false},
}

type closeWriter interface{ CloseWrite() error }

func open(t testing.TB, s *Session) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	c, err := s.Open(ctx)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func accept(t testing.TB, s *Session) net.Conn {
	t.Helper()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := s.Accept()
		ch <- result{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { _ = r.c.Close() })
		return r.c
	case <-time.After(hang):
		t.Fatal("Accept: timed out")
		return nil
	}
}

// roundTrip writes msg on c and reads it back from an echoing peer.
func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(hang)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back %q: %v", msg, err)
	}
	if diff := cmp.Diff(msg, string(got)); diff != "" {
		t.Fatalf("echo (-want +got):\n%s", diff)
	}
	if err := c.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
}

// echoDigests sends size pseudo-random bytes through a new echoed stream,
// half-closes, reads everything back and returns the digests of both.
func echoDigests(s *Session, size int64, seed byte) (sent, got string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	c, err := s.Open(ctx)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(hang)); err != nil {
		return "", "", err
	}
	werr := make(chan error, 1)
	sentSum := sha256.New()
	go func() {
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{seed}), size), sentSum)
		if _, err := io.Copy(c, src); err != nil {
			werr <- err
			return
		}
		werr <- c.(closeWriter).CloseWrite()
	}()
	gotSum := sha256.New()
	_, rerr := io.Copy(gotSum, c)
	if err := errors.Join(<-werr, rerr); err != nil {
		return "", "", err
	}
	return hex.EncodeToString(sentSum.Sum(nil)), hex.EncodeToString(gotSum.Sum(nil)), nil
}

func TestConcurrentStreamsEcho(t *testing.T) {
	const streams, size = 32, 1 << 20
	for _, tt := range transports {
		t.Run(tt.name, func(t *testing.T) {
			hub, agent := newPair(t, pairOptions{tls: tt.tls})
			serveEcho(t, agent)

			want := make([]string, streams)
			got := make([]string, streams)
			errs := make([]error, streams)
			var wg sync.WaitGroup
			for i := range streams {
				wg.Go(func() { want[i], got[i], errs[i] = echoDigests(hub, size, byte(i)) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("sha256 of what came back (-want +got):\n%s", diff)
			}
		})
	}
}

// TestHTTPOverTunnel is the intended use: the agent serves HTTP on the
// session, the hub's http.Transport dials streams.
func TestHTTPOverTunnel(t *testing.T) {
	for _, tt := range transports {
		t.Run(tt.name, func(t *testing.T) {
			hub, agent := newPair(t, pairOptions{tls: tt.tls})

			mux := http.NewServeMux()
			mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "hello %s", r.URL.Query().Get("name"))
			})
			mux.HandleFunc("GET /upgrade", func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Upgrade") != "tether-test" {
					http.Error(w, "upgrade required", http.StatusUpgradeRequired)
					return
				}
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				defer conn.Close()
				_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: tether-test\r\nConnection: Upgrade\r\n\r\nwelcome\n")
				if err := brw.Flush(); err != nil {
					t.Errorf("flush: %v", err)
					return
				}
				_, _ = io.Copy(conn, brw.Reader) // echo raw bytes until the client half-closes
				_, _ = io.WriteString(conn, "bye\n")
			})
			srv := &http.Server{Handler: mux, ReadHeaderTimeout: hang}
			var wg sync.WaitGroup
			wg.Go(func() { _ = srv.Serve(agent) })
			t.Cleanup(func() {
				_ = srv.Close()
				wg.Wait()
			})

			var opens atomic.Int32
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				opens.Add(1)
				return hub.Open(ctx)
			}}
			t.Cleanup(tr.CloseIdleConnections)
			client := &http.Client{Transport: tr, Timeout: hang}

			var bodies []string
			for _, name := range []string{"a", "b", "c"} {
				resp, err := client.Get("http://cluster.invalid/hello?name=" + name)
				if err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					t.Fatal(err)
				}
				bodies = append(bodies, string(b))
			}
			if diff := cmp.Diff([]string{"hello a", "hello b", "hello c"}, bodies); diff != "" {
				t.Errorf("bodies (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(int32(1), opens.Load()); diff != "" {
				t.Errorf("streams opened for three sequential requests (-want +got):\n%s", diff)
			}

			req, err := http.NewRequest(http.MethodGet, "http://cluster.invalid/upgrade", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "tether-test")
			resp, err := (&http.Client{Transport: tr}).Do(req) // no total deadline on an upgraded stream
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(http.StatusSwitchingProtocols, resp.StatusCode); diff != "" {
				t.Fatalf("status (-want +got):\n%s", diff)
			}
			rwc := resp.Body.(io.ReadWriteCloser)
			defer rwc.Close()
			br := bufio.NewReader(rwc)
			var transcript []string
			line, err := br.ReadString('\n')
			transcript = append(transcript, line)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.WriteString(rwc, "ping\n"); err != nil {
				t.Fatal(err)
			}
			line, err = br.ReadString('\n')
			transcript = append(transcript, line)
			if err != nil {
				t.Fatal(err)
			}
			if err := rwc.(closeWriter).CloseWrite(); err != nil {
				t.Fatalf("CloseWrite through the 101 body: %v", err)
			}
			rest, err := io.ReadAll(br)
			transcript = append(transcript, string(rest))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"welcome\n", "ping\n", "bye\n"}, transcript); diff != "" {
				t.Errorf("upgraded stream transcript (-want +got):\n%s", diff)
			}
		})
	}
}

// TestSlowReaderIsolation: a stream whose reader stops stalls only its own
// writer; another stream on the same session keeps working.
func TestSlowReaderIsolation(t *testing.T) {
	const chunk = 16 << 10
	hub, agent := newPair(t, pairOptions{tls: true, cfg: Config{MaxStreamWindow: MinStreamWindow}})
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)

	stalled := open(t, hub)
	stalledPeer := accept(t, agent) // accepted, never read until the end
	echo := open(t, hub)            // closed at cleanup, which ends the echo
	echoPeer := accept(t, agent)
	wg.Go(func() { _, _ = io.Copy(echoPeer, echoPeer) })

	var written atomic.Int64
	writeDone := make(chan error, 1)
	sentSum := sha256.New()
	const total = 4 * MinStreamWindow
	go func() {
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), total), sentSum)
		buf := make([]byte, chunk)
		for {
			n, err := io.ReadFull(src, buf)
			if n == 0 || errors.Is(err, io.EOF) {
				writeDone <- stalled.(closeWriter).CloseWrite()
				return
			}
			if _, err := stalled.Write(buf[:n]); err != nil {
				writeDone <- err
				return
			}
			written.Add(int64(n))
		}
	}()
	waitFor(t, "the stalled stream's window to fill", func() bool { return written.Load() >= MinStreamWindow })

	for i := range 200 {
		roundTrip(t, echo, fmt.Sprintf("message %d", i))
	}

	select {
	case err := <-writeDone:
		t.Fatalf("the writer of the stalled stream returned (%v); want it blocked", err)
	default:
	}
	if diff := cmp.Diff(int64(MinStreamWindow), written.Load()); diff != "" {
		t.Errorf("bytes accepted by the stalled stream (-want +got):\n%s", diff)
	}

	gotSum := sha256.New()
	if _, err := io.Copy(gotSum, stalledPeer); err != nil {
		t.Fatalf("reading the stalled stream at last: %v", err)
	}
	if err := <-writeDone; err != nil {
		t.Fatalf("writer of the stalled stream: %v", err)
	}
	if diff := cmp.Diff(hex.EncodeToString(sentSum.Sum(nil)), hex.EncodeToString(gotSum.Sum(nil))); diff != "" {
		t.Errorf("sha256 of the stalled stream (-want +got):\n%s", diff)
	}
}

// TestDeadPeerDetection: when the network silently stops delivering, both
// sides end the session by keepalive timeout.
func TestDeadPeerDetection(t *testing.T) {
	var bh *blackhole
	hub, agent := newPair(t, pairOptions{
		cfg: Config{KeepAliveInterval: 100 * time.Millisecond, KeepAliveTimeout: 200 * time.Millisecond},
		front: func(t testing.TB, addr string) string {
			bh = newBlackhole(t, addr)
			return bh.ln.Addr().String()
		},
	})
	serveEcho(t, agent)
	roundTrip(t, open(t, hub), "through the forwarder")

	bh.drop()
	waitClosed(t, "the hub to notice", hub.Done())
	waitClosed(t, "the agent to notice", agent.Done())
	got := []bool{errors.Is(hub.Err(), ErrKeepAliveTimeout), errors.Is(agent.Err(), ErrKeepAliveTimeout)}
	if diff := cmp.Diff([]bool{true, true}, got); diff != "" {
		t.Errorf("ended by keepalive timeout, hub and agent (-want +got):\n%s\nhub: %v\nagent: %v", diff, hub.Err(), agent.Err())
	}
}

func TestThroughConnectProxy(t *testing.T) {
	proxy := newConnectProxy(t)
	var hubAddr string
	hub, agent := newPair(t, pairOptions{
		tls:   true,
		proxy: proxy.URL,
		front: func(_ testing.TB, addr string) string { hubAddr = addr; return addr },
	})
	serveEcho(t, agent)
	sent, got, err := echoDigests(hub, 256<<10, 7)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sent, got); diff != "" {
		t.Errorf("sha256 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{hubAddr}, []string{<-proxy.targets}); diff != "" {
		t.Errorf("CONNECT targets (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(int32(1), proxy.connects.Load()); diff != "" {
		t.Errorf("CONNECT requests (-want +got):\n%s", diff)
	}
}

func TestGoAway(t *testing.T) {
	hub, agent := newPair(t, pairOptions{tls: true})
	serveEcho(t, agent)
	c := open(t, hub)
	roundTrip(t, c, "before")

	if err := hub.GoAway(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, "the agent to see the GoAway", agent.GoAwayReceived())
	roundTrip(t, c, "in-flight streams carry on")

	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	_, hubErr := hub.Open(ctx)
	_, agentErr := agent.Open(ctx)
	hubGotGoAway := false
	select {
	case <-hub.GoAwayReceived():
		hubGotGoAway = true
	default:
	}
	type state struct {
		HubOpenRefused, AgentOpenRefused, HubGotGoAway bool
		HubErr, AgentErr                               error
	}
	want := state{HubOpenRefused: true, AgentOpenRefused: true}
	got := state{
		HubOpenRefused:   errors.Is(hubErr, ErrGoAway),
		AgentOpenRefused: errors.Is(agentErr, ErrGoAway),
		HubGotGoAway:     hubGotGoAway,
		HubErr:           hub.Err(),
		AgentErr:         agent.Err(),
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b error) bool { return a == b })); diff != "" {
		t.Errorf("after GoAway (-want +got):\n%s", diff)
	}
}

// TestAgentOpens: both roles can open streams.
func TestAgentOpens(t *testing.T) {
	hub, agent := newPair(t, pairOptions{})
	serveEcho(t, hub)
	roundTrip(t, open(t, agent), "from the agent")
}

func TestClose(t *testing.T) {
	hub, agent := newPair(t, pairOptions{tls: true})
	hubConn := open(t, hub)
	if _, err := io.WriteString(hubConn, "x"); err != nil {
		t.Fatal(err)
	}
	agentConn := accept(t, agent)
	if _, err := io.ReadFull(agentConn, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}

	acceptErr := make(chan error, 1)
	go func() {
		_, err := agent.Accept()
		acceptErr <- err
	}()
	hubRead := make(chan error, 1)
	go func() {
		_, err := hubConn.Read(make([]byte, 1))
		hubRead <- err
	}()
	agentRead := make(chan error, 1)
	go func() {
		_, err := agentConn.Read(make([]byte, 1))
		agentRead <- err
	}()

	if err := hub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := hub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	waitClosed(t, "the agent to see the end", agent.Done())
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	_, openErr := hub.Open(ctx)

	tests := []struct {
		name   string
		err    error
		target error
	}{
		{name: "hub Err", err: hub.Err(), target: net.ErrClosed},
		{name: "agent Err", err: agent.Err(), target: ErrPeerClosed},
		{name: "agent Accept", err: <-acceptErr, target: net.ErrClosed},
		{name: "hub Open after Close", err: openErr, target: net.ErrClosed},
		{name: "blocked hub stream Read", err: <-hubRead, target: io.ErrUnexpectedEOF},
		{name: "blocked agent stream Read", err: <-agentRead, target: io.ErrUnexpectedEOF},
		{name: "agent stream Write", err: writeErr(agentConn), target: ErrPeerClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.target) {
				t.Errorf("got %v, want an error matching %v", tt.err, tt.target)
			}
		})
	}
}

func writeErr(c net.Conn) error {
	_, err := c.Write([]byte("late"))
	return err
}

// TestStreamClose: Close wakes blocked calls, and the peer of a closed
// stream can finish writing (what it sends is discarded) and sees EOF.
func TestStreamClose(t *testing.T) {
	hub, agent := newPair(t, pairOptions{cfg: Config{MaxStreamWindow: MinStreamWindow}})

	reader := open(t, hub)
	readerPeer := accept(t, agent)
	writer := open(t, hub)
	_ = accept(t, agent) // never read
	readErr := make(chan error, 1)
	go func() {
		_, err := reader.Read(make([]byte, 1))
		readErr <- err
	}()
	writeErr := make(chan error, 1)
	go func() {
		_, err := writer.Write(make([]byte, 2*MinStreamWindow))
		writeErr <- err
	}()
	_ = reader.Close()
	_ = writer.Close()

	// The peer of the closed reader writes more than a window: the closed
	// side discards it rather than stalling the writer.
	_, peerWriteErr := readerPeer.Write(make([]byte, 4*MinStreamWindow))
	_, peerReadErr := readerPeer.Read(make([]byte, 1))
	_, closedReadErr := reader.Read(make([]byte, 1))

	tests := []struct {
		name   string
		err    error
		target error
	}{
		{name: "blocked Read", err: <-readErr, target: net.ErrClosed},
		{name: "blocked Write", err: <-writeErr, target: net.ErrClosed},
		{name: "Read after Close", err: closedReadErr, target: net.ErrClosed},
		{name: "peer Read", err: peerReadErr, target: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.target) {
				t.Errorf("got %v, want an error matching %v", tt.err, tt.target)
			}
		})
	}
	if peerWriteErr != nil {
		t.Errorf("peer Write to a closed stream: %v, want it discarded without error", peerWriteErr)
	}
	_ = readerPeer.Close()
	waitFor(t, "the closed reader's stream to be released on both sides", func() bool {
		return hub.NumStreams() == 1 && agent.NumStreams() == 1
	})
}

func TestDeadline(t *testing.T) {
	hub, agent := newPair(t, pairOptions{})
	c := open(t, hub)
	_ = accept(t, agent)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	got := []bool{errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout()}
	if diff := cmp.Diff([]bool{true, true}, got); diff != "" {
		t.Errorf("deadline error %v: [is os.ErrDeadlineExceeded, is a timeout] (-want +got):\n%s", err, diff)
	}
}

func TestConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Config
		want Config
	}{
		{
			name: "zero",
			in:   Config{},
			want: Config{
				KeepAliveInterval: DefaultKeepAliveInterval,
				KeepAliveTimeout:  DefaultKeepAliveTimeout,
				StreamOpenTimeout: DefaultStreamOpenTimeout,
				MaxStreamWindow:   DefaultMaxStreamWindow,
			},
		},
		{
			name: "set",
			in:   Config{KeepAliveInterval: time.Second, KeepAliveTimeout: 2 * time.Second, StreamOpenTimeout: 3 * time.Second, MaxStreamWindow: 4 << 20},
			want: Config{KeepAliveInterval: time.Second, KeepAliveTimeout: 2 * time.Second, StreamOpenTimeout: 3 * time.Second, MaxStreamWindow: 4 << 20},
		},
		{
			name: "smallest window",
			in:   Config{MaxStreamWindow: MinStreamWindow},
			want: Config{
				KeepAliveInterval: DefaultKeepAliveInterval,
				KeepAliveTimeout:  DefaultKeepAliveTimeout,
				StreamOpenTimeout: DefaultStreamOpenTimeout,
				MaxStreamWindow:   MinStreamWindow,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.in.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			got.Logger = nil
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestConfigInvalid(t *testing.T) {
	tests := []struct {
		name string
		in   Config
	}{
		{name: "negative interval", in: Config{KeepAliveInterval: -1}},
		{name: "negative timeout", in: Config{KeepAliveTimeout: -1}},
		{name: "negative open timeout", in: Config{StreamOpenTimeout: -1}},
		{name: "window too small", in: Config{MaxStreamWindow: MinStreamWindow - 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.in.withDefaults(); err == nil {
				t.Error("got no error")
			}
		})
	}
}

// TestOpenHonoursContext: Open returns when ctx ends even while yamux
// blocks (here: every slot for unacknowledged opens is taken, because the
// agent accepts nothing).
func TestOpenHonoursContext(t *testing.T) {
	hub, _ := newPair(t, pairOptions{cfg: Config{StreamOpenTimeout: hang}})
	for range acceptBacklog {
		_ = open(t, hub)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := hub.Open(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want %v", err, context.DeadlineExceeded)
	}
}

// TestUnacknowledgedOpen: a peer that does not accept a stream within
// StreamOpenTimeout is presumed wedged, and the session ends.
func TestUnacknowledgedOpen(t *testing.T) {
	hub, _ := newPair(t, pairOptions{cfg: Config{StreamOpenTimeout: 100 * time.Millisecond}})
	_ = open(t, hub) // the agent never accepts it
	waitClosed(t, "the session to end", hub.Done())
	if !errors.Is(hub.Err(), errSessionEnded) {
		t.Errorf("Err: got %v, want %v", hub.Err(), errSessionEnded)
	}
}
