package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// closeHandshakeTimeout bounds the WebSocket close handshake of a deliberate
// Session.Close. A live peer answers within one round trip; a dead one is
// cut off after this long.
const closeHandshakeTimeout = time.Second

// wsConn is the byte stream yamux runs on: binary WebSocket messages read and
// written through websocket.NetConn. It watches the incoming yamux frame
// headers for a GoAway (yamux records a received GoAway but does not expose
// it), counts the peer's pings not answered yet (see maxUnansweredPings)
// and remembers the first reason the byte stream ended.
type wsConn struct {
	ws      *websocket.Conn
	nc      net.Conn           // websocket.NetConn(ctx, ws, MessageBinary)
	cancel  context.CancelFunc // cancels the ctx nc is bound to: aborts the connection
	onClose func()             // called first thing in Close

	// watch is used only by the goroutine that calls Read (yamux's receive
	// loop), sent only by the one that calls Write (yamux's send loop);
	// they need no lock.
	watch, sent frameWatcher
	// unanswered counts the peer's pings whose answer is not written yet.
	unanswered atomic.Int64

	// held is the header of a data frame whose payload yamux writes next
	// (see Write); wbuf joins them. Used only by yamux's send loop.
	held [yamuxHeaderSize]byte
	hold bool
	wbuf []byte

	mu    sync.Mutex // guards cause
	cause error      // first reason the session ended; nil while it lives
}

// newWSConn wraps ws. The NetConn lives until Close, never longer than the
// connection itself: its context is not derived from any request or
// handshake context.
func newWSConn(ws *websocket.Conn, onGoAway, onClose func()) *wsConn {
	ctx, cancel := context.WithCancel(context.Background())
	c := &wsConn{
		ws:      ws,
		nc:      websocket.NetConn(ctx, ws, websocket.MessageBinary),
		cancel:  cancel,
		onClose: onClose,
	}
	c.watch = frameWatcher{onGoAway: onGoAway, onPing: func() { c.unanswered.Add(1) }}
	c.sent = frameWatcher{onPingAnswer: func() { c.unanswered.Add(-1) }}
	return c
}

// maxUnansweredPings bounds the peer's pings this side has not answered
// yet. yamux answers each ping from a goroutine of its own, which waits
// while the connection is busy, so a peer that pings faster than it reads
// the answers would pile up goroutines here without bound. A conforming
// peer pings once per keepalive interval and has at most one unanswered;
// the bound leaves room for a read full of pings (4 KiB, 341) still being
// answered.
const maxUnansweredPings = 1024

// errPingFlood ends a session whose peer pings without reading the answers.
var errPingFlood = fmt.Errorf("tunnel: protocol error: the peer sent more than %d pings it did not read the answers to", maxUnansweredPings)

func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.watch.scan(p[:n])
	if c.unanswered.Load() > maxUnansweredPings {
		// Before yamux sees these pings: it would start a goroutine each.
		c.setCause(errPingFlood)
		return 0, errPingFlood
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.setCause(ErrPeerClosed)
		} else {
			c.setCause(fmt.Errorf("tunnel: read: %w", err))
		}
	}
	return n, err
}

// Write sends p as one WebSocket message. yamux's send loop writes a data
// frame as two calls, its 12-byte header and then its payload; Write holds
// such a header back and sends it in one message with the payload, so that
// a frame costs one message, one TLS record and one system call rather
// than two of each.
func (c *wsConn) Write(p []byte) (int, error) {
	if !c.hold && isDataHeader(p) {
		copy(c.held[:], p)
		c.hold = true
		return len(p), nil
	}
	msg := p
	if c.hold {
		c.hold = false
		c.wbuf = append(append(c.wbuf[:0], c.held[:]...), p...)
		msg = c.wbuf
		if cap(c.wbuf) > maxFrameData+yamuxHeaderSize {
			c.wbuf = nil // a frame of someone else's yamux: keep no huge buffer
		}
	}
	n, err := c.nc.Write(msg)
	c.sent.scan(msg[:n])
	if err != nil {
		c.setCause(fmt.Errorf("tunnel: write: %w", err))
		return max(0, n-(len(msg)-len(p))), err
	}
	return len(p), nil
}

// isDataHeader reports whether p is exactly the header of a yamux data
// frame with a payload, which follows in the next write.
func isDataHeader(p []byte) bool {
	return len(p) == yamuxHeaderSize && p[0] == yamuxVersion && p[1] == yamuxTypeData && binary.BigEndian.Uint32(p[8:12]) > 0
}

// Close aborts the connection without a close handshake. yamux calls it when
// the session ends for any reason, right after it has signalled its
// shutdown; a deliberate close calls closeGracefully first.
func (c *wsConn) Close() error {
	c.setCause(errSessionEnded)
	c.onClose()
	c.cancel()
	_ = c.ws.CloseNow() // closes the TCP (or hijacked) connection
	return nil
}

// closeGracefully sends a WebSocket close frame (1000) and waits for the
// peer's, at most closeHandshakeTimeout; then the connection is closed.
func (c *wsConn) closeGracefully() {
	// Cancelling the NetConn's context closes the connection under the
	// reader (yamux's receive loop) and any stuck writer, which unblocks the
	// handshake below.
	t := time.AfterFunc(closeHandshakeTimeout, c.cancel)
	defer t.Stop()
	_ = c.ws.Close(websocket.StatusNormalClosure, "")
	c.cancel()
}

// LocalAddr and RemoteAddr let yamux streams report addresses. On the hub
// side they are the real TCP addresses; coder/websocket's dialer only knows
// a placeholder.
func (c *wsConn) LocalAddr() net.Addr  { return c.nc.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

func (c *wsConn) setCause(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cause == nil {
		c.cause = err
	}
}

func (c *wsConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cause
}

// yamux frame layout (hashicorp/yamux spec.md): version, type, flags,
// stream ID, length; 12 bytes, big endian. Only data frames carry a payload.
const (
	yamuxHeaderSize   = 12
	yamuxVersion      = 0
	yamuxTypeData     = 0
	yamuxTypePing     = 2
	yamuxTypeGoAway   = 3
	yamuxGoAwayNormal = 0
	yamuxFlagSYN      = 1
	yamuxFlagACK      = 2
)

// frameWatcher follows the yamux frame headers in a byte stream, whatever
// the chunking of the reads, and reports a GoAway with the normal code, a
// ping (SYN) and a ping answer (ACK) to the callbacks that are set. It
// stops at the first header with an unknown version: yamux ends the
// session there anyway.
type frameWatcher struct {
	onGoAway, onPing, onPingAnswer func()

	hdr    [yamuxHeaderSize]byte
	have   int    // bytes of hdr filled
	skip   uint32 // payload bytes of the current data frame still to pass
	broken bool
}

func (w *frameWatcher) scan(b []byte) {
	for len(b) > 0 && !w.broken {
		if w.skip > 0 {
			k := min(uint32(len(b)), w.skip)
			w.skip -= k
			b = b[k:]
			continue
		}
		k := copy(w.hdr[w.have:], b)
		w.have += k
		b = b[k:]
		if w.have < yamuxHeaderSize {
			return
		}
		w.have = 0
		if w.hdr[0] != yamuxVersion {
			w.broken = true
			return
		}
		length := binary.BigEndian.Uint32(w.hdr[8:12])
		switch w.hdr[1] {
		case yamuxTypeData:
			w.skip = length
		case yamuxTypePing:
			flags := binary.BigEndian.Uint16(w.hdr[2:4])
			switch {
			case flags&yamuxFlagSYN != 0 && w.onPing != nil:
				w.onPing()
			case flags&yamuxFlagACK != 0 && w.onPingAnswer != nil:
				w.onPingAnswer()
			}
		case yamuxTypeGoAway:
			if length == yamuxGoAwayNormal && w.onGoAway != nil {
				w.onGoAway()
			}
		}
	}
}
