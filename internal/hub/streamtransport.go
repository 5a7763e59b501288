package hub

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// streamTransport is the gateway's http.RoundTripper: HTTP/1.1 over the
// tunnel's streams, one request at a time per stream, idle streams kept for
// the next request.
//
// It does what http.Transport would, minus what a tunnel does not need,
// and without its two goroutines per connection: the request is written
// and the response read by the goroutine that calls RoundTrip (and reads
// the body). A small request costs two goroutine hand-offs fewer, and a
// held stream (a watch) no goroutine, no write buffer and a 1 KiB read
// buffer rather than two goroutines and 8 KiB of buffers.
//
// What it does not do, because the agent's HTTP server never needs it: no
// proxies, no TLS, no HTTP/2, no transparent gzip (the client's own
// Accept-Encoding goes through, and the response as the API server sent
// it), no waiting for "100 Continue" (the body follows the headers at
// once, as with http.Transport's default ExpectContinueTimeout of zero).
type streamTransport struct {
	// open opens a new stream to the agent.
	open func(ctx context.Context) (net.Conn, error)
	// maxIdle bounds the idle streams kept; idleTimeout is how long one
	// may stay idle before it is closed rather than reused.
	maxIdle     int
	idleTimeout time.Duration

	mu     sync.Mutex
	idle   []*streamConn // most recently used last
	closed bool
}

// streamConn is one stream and the read buffer of the response on it.
type streamConn struct {
	conn   net.Conn
	br     *bufio.Reader
	idleAt time.Time
	reused bool
}

// respReadBuffer is the size of a stream's response read buffer: enough
// for the API server's response headers in one read; a larger body read
// bypasses it.
const respReadBuffer = 1 << 10

// writers are the buffers requests are written through, held only while a
// request's headers (and body) are written.
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, 4<<10) }}

// RoundTrip implements http.RoundTripper.
func (t *streamTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, fmt.Errorf("tunnel transport: unsupported scheme %q", req.URL.Scheme)
	}
	for {
		sc, err := t.get(req.Context())
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := t.roundTrip(sc, req)
		if err == nil {
			return resp, nil
		}
		sc.conn.Close()
		var ne *noResponseError
		if sc.reused && errors.As(err, &ne) && replayable(req) && req.Context().Err() == nil {
			// The agent closed an idle stream as the request went out: send
			// it again on a new one, as http.Transport does.
			continue
		}
		closeBody(req)
		return nil, err
	}
}

// noResponseError is a failure before any byte of the response arrived.
type noResponseError struct{ err error }

func (e *noResponseError) Error() string { return e.err.Error() }
func (e *noResponseError) Unwrap() error { return e.err }

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

func (t *streamTransport) roundTrip(sc *streamConn, req *http.Request) (*http.Response, error) {
	// The caller giving up ends the stream: a blocked write or read returns.
	stop := context.AfterFunc(req.Context(), func() { sc.conn.Close() })
	fail := func(err error) error {
		stop()
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return ctxErr
		}
		return err
	}
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(sc.conn)
	err := req.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	bw.Reset(nil)
	writers.Put(bw)
	if err != nil {
		return nil, fail(&noResponseError{fmt.Errorf("write request to the agent: %w", err)})
	}
	var resp *http.Response
	for {
		if _, err := sc.br.Peek(1); err != nil {
			return nil, fail(&noResponseError{fmt.Errorf("read response from the agent: %w", err)})
		}
		resp, err = http.ReadResponse(sc.br, req)
		if err != nil {
			return nil, fail(fmt.Errorf("read response from the agent: %w", err))
		}
		// Interim answers (100 Continue, 103 Early Hints) are skipped; a
		// 101 is the final answer of an upgrade.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		resp.Body.Close()
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		stop()
		// The stream is the upgraded connection's now, never reused.
		resp.Body = &upgradedBody{br: sc.br, conn: sc.conn}
		return resp, nil
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody {
		// Nothing to read (HEAD, 204, 304, an empty body): the stream is
		// free at once.
		if !stop() || !keep {
			sc.conn.Close()
		} else {
			t.put(sc)
		}
		return resp, nil
	}
	resp.Body = &streamBody{t: t, sc: sc, body: resp.Body, keep: keep, stop: stop}
	return resp, nil
}

// streamBody is a response body; read to its end, it gives the stream back
// for the next request, closed early it closes the stream (unread data
// would otherwise be taken for the next response).
type streamBody struct {
	t    *streamTransport
	sc   *streamConn
	body io.ReadCloser
	keep bool
	stop func() bool

	mu   sync.Mutex
	done bool
}

func (b *streamBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.finish(true)
	}
	return n, err
}

func (b *streamBody) Close() error {
	b.finish(false)
	return nil
}

// finish releases the stream once: back to the idle list after a complete
// body on a connection both sides keep alive, else closed.
func (b *streamBody) finish(complete bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return
	}
	b.done = true
	canceled := !b.stop() // the context's AfterFunc already closed it
	if complete && b.keep && !canceled {
		b.body.Close()
		b.t.put(b.sc)
		return
	}
	// The stream first: closing a body not read to its end would read the
	// rest (a watch's rest never comes), and a Read blocked on the stream
	// holds the body until the stream ends.
	b.sc.conn.Close()
	b.body.Close()
}

// upgradedBody is the body of a 101: the stream itself, after what the
// read buffer holds. httputil.ReverseProxy copies the upgraded connection
// through it (and half-closes it with CloseWrite).
type upgradedBody struct {
	br   *bufio.Reader
	conn net.Conn
}

func (b *upgradedBody) Read(p []byte) (int, error)  { return b.br.Read(p) }
func (b *upgradedBody) Write(p []byte) (int, error) { return b.conn.Write(p) }
func (b *upgradedBody) Close() error                { return b.conn.Close() }

func (b *upgradedBody) CloseWrite() error {
	if cw, ok := b.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// get returns an idle stream (the most recently used one that has not been
// idle too long), or opens a new one.
func (t *streamTransport) get(ctx context.Context) (*streamConn, error) {
	now := time.Now()
	t.mu.Lock()
	var stale []*streamConn
	var sc *streamConn
	for len(t.idle) > 0 {
		c := t.idle[len(t.idle)-1]
		t.idle = t.idle[:len(t.idle)-1]
		if now.Sub(c.idleAt) < t.idleTimeout {
			sc = c
			break
		}
		stale = append(stale, c)
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.conn.Close()
	}
	if sc != nil {
		sc.reused = true
		return sc, nil
	}
	conn, err := t.open(ctx)
	if err != nil {
		return nil, err
	}
	return &streamConn{conn: conn, br: bufio.NewReaderSize(conn, respReadBuffer)}, nil
}

// put keeps sc for the next request, unless enough are kept already or
// the transport is closed.
func (t *streamTransport) put(sc *streamConn) {
	sc.idleAt = time.Now()
	t.mu.Lock()
	if t.closed || len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		sc.conn.Close()
		return
	}
	t.idle = append(t.idle, sc)
	t.mu.Unlock()
}

// CloseIdleConnections closes the idle streams, and every stream given
// back from now on: the tunnel is going away.
func (t *streamTransport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle, t.closed = nil, true
	t.mu.Unlock()
	for _, sc := range idle {
		sc.conn.Close()
	}
}
