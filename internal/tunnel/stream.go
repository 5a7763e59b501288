package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// maxFrameData caps the payload of one data frame. The connection is shared
// and yamux writes frames one at a time in order, so a frame is the unit of
// head-of-line blocking: a keepalive ping, a window update or another
// stream's data waits for at most the frames queued ahead of it (yamux queues
// up to 64), each at most this long. Most writers (io.Copy,
// httputil.ReverseProxy) write 32 KiB at a time anyway.
const maxFrameData = 64 << 10

// aLongTimeAgo is a deadline in the past, used to wake blocked calls.
func aLongTimeAgo() time.Time { return time.Unix(1, 0) }

// stream is one yamux stream as a net.Conn with the semantics of a TCP
// connection: Close ends reading and writing locally, wakes blocked calls
// and keeps discarding what the peer still sends until its FIN, so the
// peer's writer never waits on a window that nobody will open; CloseWrite is
// a half-close (yamux FIN).
type stream struct {
	ys   *yamux.Stream
	sess *Session

	rmu sync.Mutex // held by Read, and by the drain after Close until no Read can touch ys
	wmu sync.Mutex // held by Write, so the frames of one Write are contiguous

	mu     sync.Mutex // guards the fields below, and orders deadline changes with them
	closed bool       // Close was called
	ended  bool       // the session ended: deadlines are pinned in the past
	sawEOF bool       // the peer's FIN was read: nothing left to drain
}

func (c *stream) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	if c.isClosed() {
		return 0, c.opError("read", net.ErrClosed)
	}
	n, err := c.ys.Read(p)
	if err == io.EOF {
		if c.sess.mux.IsClosed() {
			// yamux reports the end of the session to a stream as a clean
			// EOF; a truncated body or exec session must not look complete.
			return n, c.sessionEndedErr("read")
		}
		c.mu.Lock()
		c.sawEOF = true
		c.mu.Unlock()
		return n, io.EOF
	}
	return n, c.mapErr("read", err)
}

func (c *stream) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.isClosed() {
		return 0, c.opError("write", net.ErrClosed)
	}
	written := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), maxFrameData)]
		n, err := c.ys.Write(chunk)
		written += n
		if err != nil {
			return written, c.mapErr("write", err)
		}
		p = p[n:]
	}
	return written, nil
}

// CloseWrite half-closes the stream: the peer reads EOF after the data
// written so far, and this side can still read. httputil.ReverseProxy uses
// it to pass a half-close through an upgraded connection.
func (c *stream) CloseWrite() error {
	if c.isClosed() {
		return c.opError("close", net.ErrClosed)
	}
	return c.ys.Close() // yamux's Close sends FIN and keeps the read side open
}

// Close closes the stream. Blocked Read and Write calls return net.ErrClosed.
func (c *stream) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	drain := !c.sawEOF
	_ = c.ys.SetReadDeadline(aLongTimeAgo()) // wakes a blocked Read
	c.mu.Unlock()

	_ = c.ys.Close() // sends FIN unless already sent; wakes a blocked Write
	if !drain || !c.sess.goTracked(c.drain) {
		c.sess.untrack(c)
	}
	return nil
}

// drain discards incoming data until the peer's FIN or reset, the stream's
// close timeout, or the end of the session.
func (c *stream) drain() {
	defer c.sess.untrack(c)
	// Wait until a Read woken by Close has returned; any later Read sees
	// closed and leaves ys alone.
	c.rmu.Lock()
	c.mu.Lock()
	if !c.ended {
		_ = c.ys.SetReadDeadline(time.Time{})
	}
	c.mu.Unlock()
	c.rmu.Unlock()
	_, _ = io.Copy(io.Discard, c.ys)
}

// sessionEnded wakes blocked calls for good: the session is shutting down.
func (c *stream) sessionEnded() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ended = true
	_ = c.ys.SetReadDeadline(aLongTimeAgo())
	_ = c.ys.SetWriteDeadline(aLongTimeAgo())
}

func (c *stream) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func (c *stream) LocalAddr() net.Addr  { return c.ys.LocalAddr() }
func (c *stream) RemoteAddr() net.Addr { return c.ys.RemoteAddr() }

func (c *stream) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *stream) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadlineErrLocked(); err != nil {
		return err
	}
	return c.ys.SetReadDeadline(t)
}

func (c *stream) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.deadlineErrLocked(); err != nil {
		return err
	}
	return c.ys.SetWriteDeadline(t)
}

// deadlineErrLocked says why deadlines can no longer change, if they cannot.
func (c *stream) deadlineErrLocked() error {
	switch {
	case c.closed:
		return c.opError("set deadline", net.ErrClosed)
	case c.ended:
		return c.opError("set deadline", c.sess.sessionErr())
	}
	return nil
}

// mapErr translates yamux's errors into the ones net.Conn users test for.
func (c *stream) mapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case c.isClosed():
		return c.opError(op, net.ErrClosed)
	case c.sess.mux.IsClosed():
		return c.sessionEndedErr(op)
	case errors.Is(err, yamux.ErrTimeout):
		return c.opError(op, os.ErrDeadlineExceeded)
	case errors.Is(err, yamux.ErrStreamClosed):
		return c.opError(op, net.ErrClosed) // write after CloseWrite
	case errors.Is(err, yamux.ErrConnectionReset):
		return c.opError(op, ErrStreamReset)
	}
	return c.opError(op, err)
}

// sessionEndedErr is the error of a call cut short by the end of the
// session; a read says the data stopped unexpectedly.
func (c *stream) sessionEndedErr(op string) error {
	err := c.sess.sessionErr()
	if op == "read" {
		err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, err)
	}
	return c.opError(op, err)
}

func (c *stream) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tunnel", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
