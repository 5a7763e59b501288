package tunnel

import (
	"encoding/binary"
	"io"
	"net/http"
)

// A WebSocket client masks every frame it sends (RFC 6455 section 5.3).
// coder/websocket masks through its 4 KiB write buffer and flushes it each
// time it fills, so a 64 KiB frame left the agent as sixteen 4 KiB writes:
// sixteen TLS records and sixteen system calls, which were 40 % of the
// agent's CPU when it sends bulk data. frameWriter sits between
// coder/websocket and the TLS connection on the agent's side and passes
// each frame on in one write, which TLS sends as 16 KiB records.

// coalescingTransport wraps the agent's transport for the upgrade: the
// upgraded connection it returns writes whole frames (frameWriter).
type coalescingTransport struct{ rt http.RoundTripper }

func (t coalescingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.rt.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		return resp, err
	}
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		resp.Body = &frameWriter{ReadWriteCloser: rwc}
	}
	return resp, nil
}

// maxHeldFrame bounds what frameWriter holds of an unfinished frame before
// it writes it anyway: the tunnel's frames are at most maxFrameData plus
// yamux's and WebSocket's headers; someone else's might be larger.
const maxHeldFrame = 4 * maxFrameData

// frameWriter writes complete WebSocket frames: it follows the frames in
// the byte stream written to it, holds the bytes of an unfinished frame,
// and writes once a frame is complete. It is used by one writer at a time
// (coder/websocket writes frames under its own lock).
type frameWriter struct {
	io.ReadWriteCloser

	held []byte
	// hdr collects the current frame's header; need is the header's
	// length once known (0 while it is not), rest the payload bytes of
	// the current frame still to come once the header is complete.
	hdr  []byte
	need int
	rest uint64
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.held = append(w.held, p...)
	complete := 0 // bytes of held that end on a frame boundary
	for q, off := p, len(w.held)-len(p); len(q) > 0; {
		if w.rest > 0 {
			k := min(uint64(len(q)), w.rest)
			w.rest -= k
			q, off = q[k:], off+int(k)
			if w.rest == 0 {
				complete = off
			}
			continue
		}
		// A header: 2 bytes, then 2 or 8 of extended length, then 4 of
		// mask key when the mask bit is set.
		w.hdr = append(w.hdr, q[0])
		q, off = q[1:], off+1
		if len(w.hdr) == 2 {
			w.need = 2
			switch w.hdr[1] & 0x7f {
			case 126:
				w.need += 2
			case 127:
				w.need += 8
			}
			if w.hdr[1]&0x80 != 0 {
				w.need += 4
			}
		}
		if len(w.hdr) < 2 || len(w.hdr) < w.need {
			continue
		}
		switch n := w.hdr[1] & 0x7f; n {
		case 126:
			w.rest = uint64(binary.BigEndian.Uint16(w.hdr[2:4]))
		case 127:
			w.rest = binary.BigEndian.Uint64(w.hdr[2:10])
		default:
			w.rest = uint64(n)
		}
		w.hdr, w.need = w.hdr[:0], 0
		if w.rest == 0 {
			complete = off
		}
	}
	if complete == 0 && len(w.held) < maxHeldFrame {
		return len(p), nil
	}
	if complete == 0 {
		complete = len(w.held)
	}
	if _, err := w.ReadWriteCloser.Write(w.held[:complete]); err != nil {
		w.held = w.held[:0]
		return 0, err
	}
	w.held = append(w.held[:0], w.held[complete:]...)
	if cap(w.held) > maxHeldFrame {
		w.held = append([]byte(nil), w.held...)
	}
	return len(p), nil
}
