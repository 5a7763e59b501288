package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
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
// it) and remembers the first reason the byte stream ended.
type wsConn struct {
	ws      *websocket.Conn
	nc      net.Conn           // websocket.NetConn(ctx, ws, MessageBinary)
	cancel  context.CancelFunc // cancels the ctx nc is bound to: aborts the connection
	onClose func()             // called first thing in Close

	// watch is used only by the goroutine that calls Read (yamux's receive
	// loop); it needs no lock.
	watch frameWatcher

	mu    sync.Mutex // guards cause
	cause error      // first reason the session ended; nil while it lives
}

// newWSConn wraps ws. The NetConn lives until Close, never longer than the
// connection itself: its context is not derived from any request or
// handshake context.
func newWSConn(ws *websocket.Conn, onGoAway, onClose func()) *wsConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &wsConn{
		ws:      ws,
		nc:      websocket.NetConn(ctx, ws, websocket.MessageBinary),
		cancel:  cancel,
		onClose: onClose,
		watch:   frameWatcher{onGoAway: onGoAway},
	}
}

func (c *wsConn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.watch.scan(p[:n])
	if err != nil {
		if errors.Is(err, io.EOF) {
			c.setCause(ErrPeerClosed)
		} else {
			c.setCause(fmt.Errorf("tunnel: read: %w", err))
		}
	}
	return n, err
}

func (c *wsConn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	if err != nil {
		c.setCause(fmt.Errorf("tunnel: write: %w", err))
	}
	return n, err
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
	yamuxTypeGoAway   = 3
	yamuxGoAwayNormal = 0
)

// frameWatcher follows the yamux frame headers in a byte stream, whatever
// the chunking of the reads, and reports a GoAway with the normal code.
// It stops at the first header with an unknown version: yamux ends the
// session there anyway.
type frameWatcher struct {
	onGoAway func()

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
		case yamuxTypeGoAway:
			if length == yamuxGoAwayNormal {
				w.onGoAway()
			}
		}
	}
}
