package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/hashicorp/yamux"
)

// Errors a Session or its streams report.
var (
	// ErrGoAway is returned by Open once either side has sent a GoAway.
	ErrGoAway = errors.New("tunnel: session is going away, open a new one")
	// ErrKeepAliveTimeout is the end of a session whose peer did not answer
	// a keepalive ping in time.
	ErrKeepAliveTimeout = errors.New("tunnel: keepalive timeout")
	// ErrPeerClosed is the end of a session the peer closed.
	ErrPeerClosed = errors.New("tunnel: peer closed the session")
	// ErrStreamReset is returned by a stream the peer reset (refused it,
	// or gave up waiting for this side to finish a close).
	ErrStreamReset = errors.New("tunnel: stream reset by peer")

	// errSessionEnded is the end of a session that yamux closed by itself:
	// a protocol error, or a stream the peer did not acknowledge within
	// StreamOpenTimeout.
	errSessionEnded = errors.New("tunnel: session ended by the multiplexer (protocol error or unacknowledged stream)")
)

// Defaults and limits of Config.
const (
	DefaultKeepAliveInterval = 20 * time.Second
	DefaultKeepAliveTimeout  = 10 * time.Second
	DefaultStreamOpenTimeout = 10 * time.Second
	DefaultMaxStreamWindow   = 1 << 20
	// MinStreamWindow is yamux's initial window, which both sides assume
	// before any window update; a window cannot be smaller.
	MinStreamWindow = 256 << 10

	// acceptBacklog is how many opened streams may wait for Accept, and
	// how many unacknowledged opens the opener allows; yamux assumes both
	// sides use the same number.
	acceptBacklog = 256
	// streamCloseTimeout is how long a closed stream waits for the peer's
	// FIN before resetting it (yamux's default).
	streamCloseTimeout = 5 * time.Minute
)

// Config tunes a Session. The zero value is ready to use.
type Config struct {
	// KeepAliveInterval is how often a keepalive ping is sent to the peer.
	// Zero means 20s, below the idle timeout of common load balancers
	// (about 25s). Must not be negative.
	KeepAliveInterval time.Duration

	// KeepAliveTimeout is how long a ping may take to be written and then
	// answered before the peer is declared dead and the session closed; it
	// also bounds the wait to write any one frame. A peer whose network
	// silently drops is detected within KeepAliveInterval+KeepAliveTimeout
	// (at most one more KeepAliveTimeout if writes are stuck too). Zero
	// means 10s. Must not be negative.
	KeepAliveTimeout time.Duration

	// StreamOpenTimeout bounds Open, and is how long the peer may take to
	// acknowledge a new stream; a peer that does not is presumed wedged and
	// the session is closed. Zero means 10s. Must not be negative.
	StreamOpenTimeout time.Duration

	// MaxStreamWindow is the most unread data, in bytes, this side buffers
	// per stream; the peer's writer on a stream blocks once that much is
	// unread, which stalls only that stream. It also caps one stream's
	// throughput at MaxStreamWindow per round trip (1 MiB over a 100ms link:
	// about 10 MiB/s). The memory cost is up to MaxStreamWindow per stream
	// whose reader is slow. Zero means 1 MiB; the minimum is 256 KiB.
	MaxStreamWindow uint32

	// Logger receives the multiplexer's own diagnostics. nil discards them.
	Logger *slog.Logger

	// OnPing, when set, is called with the round-trip time of each
	// keepalive ping the peer answers (every KeepAliveInterval), for
	// metrics: the tunnel's latency is measured without a ping of its own.
	// It runs on the keepalive's goroutine and must not block.
	OnPing func(rtt time.Duration)
}

func (c Config) withDefaults() (Config, error) {
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"KeepAliveInterval", &c.KeepAliveInterval, DefaultKeepAliveInterval},
		{"KeepAliveTimeout", &c.KeepAliveTimeout, DefaultKeepAliveTimeout},
		{"StreamOpenTimeout", &c.StreamOpenTimeout, DefaultStreamOpenTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("tunnel: config: %s must not be negative, got %s", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.MaxStreamWindow == 0 {
		c.MaxStreamWindow = DefaultMaxStreamWindow
	}
	if c.MaxStreamWindow < MinStreamWindow {
		return c, fmt.Errorf("tunnel: config: MaxStreamWindow must be at least %d, got %d", MinStreamWindow, c.MaxStreamWindow)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// Session is one tunnel: a multiplexed connection whose streams are
// net.Conns. Either side may Open streams and Accept the peer's; in Tether
// the hub opens them and the agent accepts them. A Session is a
// net.Listener, so http.Server.Serve can serve on it.
type Session struct {
	cfg  Config
	mux  *yamux.Session
	conn *wsConn

	goAwaySent     chan struct{} // closed by GoAway
	goAwaySentOnce sync.Once
	goAwayRecv     chan struct{} // closed when the peer's GoAway arrives
	goAwayRecvOnce sync.Once

	closeOnce sync.Once

	// handshake holds the other side's headers of the upgrade: the
	// response's on the agent, the request's on the hub. Read-only.
	handshake http.Header

	mu      sync.Mutex // guards the fields below, and adding to wg
	closed  bool       // Close was called: start no goroutine
	ended   bool       // the multiplexer is shutting down: streams are woken
	streams map[*stream]struct{}
	// afterEnd are the functions AfterEnd registered, run when the
	// session ends; nil from then on.
	afterEnd []func()
	// pinger sends the next keepalive ping (see keepalive); stopped when
	// the session ends.
	pinger *time.Timer
	wg     sync.WaitGroup // goroutines the session started; Close waits for them
}

// newSession starts a session on ws. client is true on the side that
// accepted the WebSocket (the hub): it is the yamux client.
func newSession(ws *websocket.Conn, client bool, cfg Config) (*Session, error) {
	s := &Session{
		cfg:        cfg,
		goAwaySent: make(chan struct{}),
		goAwayRecv: make(chan struct{}),
		streams:    make(map[*stream]struct{}),
	}
	s.conn = newWSConn(ws, s.peerGoAway, s.end)
	ycfg := &yamux.Config{
		AcceptBacklog: acceptBacklog,
		// The session runs its own keepalive (same pings, same timing as
		// yamux's) so that Err can tell a keepalive timeout apart.
		EnableKeepAlive:        false,
		KeepAliveInterval:      cfg.KeepAliveInterval,
		ConnectionWriteTimeout: cfg.KeepAliveTimeout,
		MaxStreamWindowSize:    cfg.MaxStreamWindow,
		StreamOpenTimeout:      cfg.StreamOpenTimeout,
		StreamCloseTimeout:     streamCloseTimeout,
		Logger:                 yamuxLogger{log: cfg.Logger, conn: s.conn},
	}
	var err error
	if client {
		s.mux, err = yamux.Client(s.conn, ycfg)
	} else {
		s.mux, err = yamux.Server(s.conn, ycfg)
	}
	if err != nil {
		_ = s.conn.Close()
		return nil, fmt.Errorf("tunnel: start multiplexer: %w", err)
	}
	s.mu.Lock()
	if !s.ended {
		s.pinger = time.AfterFunc(cfg.KeepAliveInterval, s.keepalive)
	}
	s.mu.Unlock()
	return s, nil
}

// Open opens a new stream to the peer. It does not wait for the peer to
// acknowledge the stream (data may follow at once); it is bounded by ctx and
// StreamOpenTimeout. After a GoAway from either side it fails with
// ErrGoAway, after Close with net.ErrClosed.
func (s *Session) Open(ctx context.Context) (net.Conn, error) {
	if s.goingAway() {
		return nil, fmt.Errorf("tunnel: open stream: %w", ErrGoAway)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.StreamOpenTimeout)
	defer cancel()

	// yamux's OpenStream blocks while too many opens are unacknowledged and
	// while its frame waits to be written, and knows no context: run it
	// aside, and close what it opens if the caller has given up by then.
	type result struct {
		ys  *yamux.Stream
		err error
	}
	done := make(chan result)
	abandoned := make(chan struct{})
	started := s.goTracked(func() {
		ys, err := s.mux.OpenStream()
		select {
		case done <- result{ys, err}:
		case <-abandoned:
			if ys != nil {
				_ = ys.Close()
			}
		}
	})
	if !started {
		return nil, fmt.Errorf("tunnel: open stream: %w", net.ErrClosed)
	}
	select {
	case r := <-done:
		switch {
		case r.err == nil:
			return s.newStream(r.ys), nil
		case errors.Is(r.err, yamux.ErrRemoteGoAway):
			return nil, fmt.Errorf("tunnel: open stream: %w", ErrGoAway)
		case errors.Is(r.err, yamux.ErrSessionShutdown):
			return nil, fmt.Errorf("tunnel: open stream: %w", s.sessionErr())
		}
		return nil, fmt.Errorf("tunnel: open stream: %w", r.err)
	case <-ctx.Done():
		close(abandoned)
		return nil, fmt.Errorf("tunnel: open stream: %w", ctx.Err())
	}
}

// Accept waits for the next stream the peer opens. Once the session has
// ended it returns an error that matches net.ErrClosed.
func (s *Session) Accept() (net.Conn, error) {
	for {
		ys, err := s.mux.AcceptStream()
		if err == nil {
			return s.newStream(ys), nil
		}
		if s.mux.IsClosed() {
			return nil, &net.OpError{Op: "accept", Net: "tunnel", Addr: s.Addr(), Err: net.ErrClosed}
		}
		// The acknowledgement of the stream could not be written in time;
		// the stream is lost (the peer times it out), the session is not.
		s.cfg.Logger.Debug("tunnel accept failed", "err", err)
	}
}

// Addr is the local address of the underlying connection.
func (s *Session) Addr() net.Addr { return s.mux.Addr() }

// NumStreams is the number of streams currently open, including closed ones
// whose peer has not closed its side yet.
func (s *Session) NumStreams() int { return s.mux.NumStreams() }

// HandshakeHeader returns the peer's headers of the upgrade: on the
// agent, the hub's 101 response (where the hub tells the agent about its
// cluster); on the hub, the agent's request.
func (s *Session) HandshakeHeader() http.Header { return s.handshake }

// Done is closed when the session has ended, for any reason.
func (s *Session) Done() <-chan struct{} { return s.mux.CloseChan() }

// AfterEnd arranges for f to run once the session has ended, for any
// reason: once, in a goroutine of its own, after Done is closed (Err then
// says why); at once if the session has already ended. Until then it costs
// no goroutine, unlike a wait on Done. Close does not wait for f: the
// caller of AfterEnd owns f's goroutine, and waits for it if it must.
func (s *Session) AfterEnd(f func()) {
	s.mu.Lock()
	if !s.ended {
		s.afterEnd = append(s.afterEnd, f)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	go f()
}

// Err is nil while the session lives. Once Done is closed it says why the
// session ended: net.ErrClosed after Close, ErrKeepAliveTimeout,
// ErrPeerClosed, or the error of the underlying connection.
func (s *Session) Err() error {
	if !s.mux.IsClosed() {
		return nil
	}
	return s.sessionErr()
}

func (s *Session) sessionErr() error {
	if err := s.conn.err(); err != nil {
		return err
	}
	return errSessionEnded
}

// GoAway tells the peer to open no new streams on this session and to
// connect again (the load balancer may pick another hub replica); streams
// already open carry on. This side then opens no new streams either, and
// refuses the peer's. Close the session once its streams are done.
func (s *Session) GoAway() error {
	s.goAwaySentOnce.Do(func() { close(s.goAwaySent) })
	if err := s.mux.GoAway(); err != nil {
		return fmt.Errorf("tunnel: send go away: %w", err)
	}
	return nil
}

// GoAwayReceived is closed when the peer has sent a GoAway: open no new
// streams here, connect again, and let the streams in flight finish.
func (s *Session) GoAwayReceived() <-chan struct{} { return s.goAwayRecv }

// GoingAway reports whether either side has sent a GoAway: Open fails from
// then on.
func (s *Session) GoingAway() bool { return s.goingAway() }

func (s *Session) peerGoAway() {
	s.goAwayRecvOnce.Do(func() { close(s.goAwayRecv) })
}

func (s *Session) goingAway() bool {
	select {
	case <-s.goAwaySent:
		return true
	case <-s.goAwayRecv:
		return true
	default:
		return false
	}
}

// Close ends the session: it closes the WebSocket (a close handshake of at
// most a second, then the TCP connection), and with it every stream, and
// waits for the session's goroutines. It is idempotent.
func (s *Session) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.closeOnce.Do(func() {
		s.conn.setCause(net.ErrClosed)
		// The close handshake runs while yamux still lives: yamux's blocked
		// stream readers spin between its shutdown and the end of its
		// receive loop, so that gap must be short.
		s.conn.closeGracefully()
		_ = s.mux.Close()
		s.wg.Wait()
	})
	return nil
}

// newStream wraps ys, and tracks it until it is closed so that the end of
// the session can wake its blocked calls.
func (s *Session) newStream(ys *yamux.Stream) *stream {
	c := &stream{ys: ys, sess: s}
	s.mu.Lock()
	ended := s.ended
	if !ended {
		s.streams[c] = struct{}{}
	}
	s.mu.Unlock()
	if ended {
		c.sessionEnded()
	}
	return c
}

func (s *Session) untrack(c *stream) {
	s.mu.Lock()
	delete(s.streams, c)
	s.mu.Unlock()
}

// end is called once the multiplexer has signalled its shutdown (Done is
// closed), when it closes the connection. It stops the keepalive, wakes
// every blocked Read and Write of the session's streams and keeps them from
// blocking again, and starts the functions AfterEnd registered. yamux's own
// blocked readers and writers would otherwise spin from the moment it
// signals shutdown until it has closed each stream, which waits for its
// receive loop to end.
func (s *Session) end() {
	s.mu.Lock()
	s.ended = true
	if s.pinger != nil {
		s.pinger.Stop()
	}
	streams := make([]*stream, 0, len(s.streams))
	for c := range s.streams {
		streams = append(streams, c)
	}
	clear(s.streams)
	after := s.afterEnd
	s.afterEnd = nil
	s.mu.Unlock()
	for _, c := range streams {
		c.sessionEnded()
	}
	for _, f := range after {
		go f()
	}
}

// goTracked runs f in a goroutine Close waits for. It reports false, and
// does not run f, once Close has been called.
func (s *Session) goTracked(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// keepalive sends one keepalive ping, from the pinger timer's goroutine,
// and once the peer has answered arms the timer for the next, one
// KeepAliveInterval after this one (as a ticker would): an idle session
// has no goroutine of its own between pings. A ping not answered within
// KeepAliveTimeout closes the session.
func (s *Session) keepalive() {
	start := time.Now()
	s.mu.Lock()
	if s.closed || s.ended {
		s.mu.Unlock()
		return
	}
	s.wg.Add(1) // Close waits for a ping in flight
	s.mu.Unlock()
	defer s.wg.Done()
	rtt, err := s.mux.Ping()
	if err != nil {
		if s.mux.IsClosed() {
			return
		}
		s.conn.setCause(fmt.Errorf("%w: no answer to a ping within %s: %w", ErrKeepAliveTimeout, s.cfg.KeepAliveTimeout, err))
		_ = s.mux.Close()
		return
	}
	if s.cfg.OnPing != nil {
		s.cfg.OnPing(rtt)
	}
	s.mu.Lock()
	if !s.closed && !s.ended {
		s.pinger.Reset(max(0, s.cfg.KeepAliveInterval-time.Since(start)))
	}
	s.mu.Unlock()
}

// yamuxLogger passes yamux's log lines to slog: "[ERR]" lines at Warn while
// the session lives; everything else, and anything once the session is
// ending (teardown noise), at Debug.
type yamuxLogger struct {
	log  *slog.Logger
	conn *wsConn
}

func (l yamuxLogger) Print(v ...any)                 { l.emit(fmt.Sprint(v...)) }
func (l yamuxLogger) Printf(format string, v ...any) { l.emit(fmt.Sprintf(format, v...)) }
func (l yamuxLogger) Println(v ...any)               { l.emit(fmt.Sprintln(v...)) }

func (l yamuxLogger) emit(line string) {
	level := slog.LevelDebug
	if strings.HasPrefix(line, "[ERR]") && l.conn.err() == nil {
		level = slog.LevelWarn
	}
	line = strings.TrimPrefix(line, "[ERR] ")
	line = strings.TrimPrefix(line, "[WARN] ")
	line = strings.TrimPrefix(line, "yamux: ")
	l.log.Log(context.Background(), level, "multiplexer diagnostic", "err", strings.TrimSpace(line))
}
