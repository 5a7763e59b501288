package tunnel

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/goleak"
)

// The fuzz targets here play the other end of a tunnel by hand, byte by
// byte: a hostile agent against the hub's Accept, a hostile hub against the
// agent's Dial, and either against a live Session.

const (
	wsKey  = "dGhlIHNhbXBsZSBub25jZQ==" // RFC 6455's sample key
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
	// acceptPlaceholder in a fuzzed response is replaced by the right
	// Sec-WebSocket-Accept for the agent's key, so that the fuzzer can
	// reach what follows a valid handshake.
	acceptPlaceholder = "{accept}"
	// fuzzPingID is the opaque value of the ping that proves a session
	// still works after the fuzzed input.
	fuzzPingID = 0x7e11a55e
)

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// wsFrame encodes one final WebSocket frame; a client's frames are masked.
func wsFrame(opcode byte, payload []byte, masked bool) []byte {
	b := []byte{0x80 | opcode}
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		b = append(b, maskBit|byte(n))
	case n <= 0xffff:
		b = append(b, maskBit|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, maskBit|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if !masked {
		return append(b, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	b = append(b, mask[:]...)
	for i, c := range payload {
		b = append(b, c^mask[i%4])
	}
	return b
}

// wsMessages wraps data in binary messages of at most chunk bytes.
func wsMessages(data []byte, chunk int, masked bool) []byte {
	var out []byte
	for len(data) > 0 {
		k := min(chunk, len(data))
		out = append(out, wsFrame(0x2, data[:k], masked)...)
		data = data[k:]
	}
	return out
}

// yamuxFramesComplete reports whether b is a sequence of whole yamux
// frames: after it, the next byte the peer reads starts a frame header.
func yamuxFramesComplete(b []byte) bool {
	for len(b) > 0 {
		if len(b) < yamuxHeaderSize {
			return false
		}
		length := binary.BigEndian.Uint32(b[8:12])
		typ := b[1]
		b = b[yamuxHeaderSize:]
		if typ == yamuxTypeData {
			if uint64(length) > uint64(len(b)) {
				return false
			}
			b = b[length:]
		}
	}
	return true
}

// frameReader reads what the session under test sends to the raw peer:
// WebSocket frames (masked when they come from the agent) carrying yamux
// frames. It reports when the answer to the peer's ping arrives, and ends
// when the connection does.
type frameReader struct {
	pong chan struct{} // closed when the ping answer arrives
	done chan struct{} // closed when the reader has returned
}

func readFrames(br *bufio.Reader) *frameReader {
	fr := &frameReader{pong: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(fr.done)
		var yamux []byte
		ponged := false
		for {
			var h [2]byte
			if _, err := io.ReadFull(br, h[:]); err != nil {
				return
			}
			n := uint64(h[1] & 0x7f)
			switch n {
			case 126:
				var e [2]byte
				if _, err := io.ReadFull(br, e[:]); err != nil {
					return
				}
				n = uint64(binary.BigEndian.Uint16(e[:]))
			case 127:
				var e [8]byte
				if _, err := io.ReadFull(br, e[:]); err != nil {
					return
				}
				n = binary.BigEndian.Uint64(e[:])
			}
			var mask [4]byte
			if h[1]&0x80 != 0 {
				if _, err := io.ReadFull(br, mask[:]); err != nil {
					return
				}
			}
			if n > 1<<20 { // the session writes frames of at most 64 KiB
				return
			}
			payload := make([]byte, n)
			if _, err := io.ReadFull(br, payload); err != nil {
				return
			}
			for i := range payload {
				payload[i] ^= mask[i%4]
			}
			if h[0]&0x0f != 0x2 { // control frames, continuation: not ours
				continue
			}
			yamux = append(yamux, payload...)
			for len(yamux) >= yamuxHeaderSize {
				length := binary.BigEndian.Uint32(yamux[8:12])
				if yamux[1] == yamuxTypeData {
					if uint64(len(yamux)) < yamuxHeaderSize+uint64(length) {
						break
					}
					yamux = yamux[yamuxHeaderSize+length:]
					continue
				}
				const typePing, flagACK = 2, 0x2
				if yamux[1] == typePing && binary.BigEndian.Uint16(yamux[2:4])&flagACK != 0 && length == fuzzPingID && !ponged {
					ponged = true
					close(fr.pong)
				}
				yamux = yamux[yamuxHeaderSize:]
			}
		}
	}()
	return fr
}

// fuzzHub is a hub endpoint that hands each accepted session to the test.
func fuzzHub(f *testing.F) (addr string, sessions <-chan *Session) {
	ch := make(chan *Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, Config{})
		if err != nil {
			return
		}
		ch <- s
	}))
	f.Cleanup(srv.Close)
	return srv.Listener.Addr().String(), ch
}

// rawAgent connects to the hub endpoint at addr as an agent that speaks
// WebSocket by hand, and returns the connection with its reader.
func rawAgent(t *testing.T, addr string, sessions <-chan *Session) (net.Conn, *bufio.Reader, *Session) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, hang)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(hang))
	_, err = io.WriteString(c, "GET /tunnel HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: "+wsKey+"\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: "+Subprotocol+"\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	var s *Session
	select {
	case s = <-sessions:
	case <-time.After(hang):
		t.Fatal("the hub accepted no session")
	}
	_ = c.SetDeadline(time.Time{})
	return c, br, s
}

// rawHub answers the agent's Dial on l as a hub that speaks WebSocket by
// hand, and returns the connection with its reader and the agent's session.
func rawHub(t *testing.T, l net.Listener) (net.Conn, *bufio.Reader, *Session) {
	t.Helper()
	type dialed struct {
		s   *Session
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		s, err := Dial(ctx, DialConfig{URL: "ws://" + l.Addr().String() + "/tunnel"})
		ch <- dialed{s, err}
	}()
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(hang))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: "+wsAccept(req.Header.Get("Sec-WebSocket-Key"))+"\r\nSec-WebSocket-Protocol: "+Subprotocol+"\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	d := <-ch
	if d.err != nil {
		t.Fatalf("Dial: %v", d.err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, br, d.s
}

// yamuxHeader encodes a yamux frame header.
func yamuxHeader(typ byte, flags uint16, streamID, length uint32) []byte {
	b := []byte{yamuxVersion, typ}
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint32(b, streamID)
	return binary.BigEndian.AppendUint32(b, length)
}

// FuzzSessionInput feeds arbitrary bytes to a live session as its peer's
// side: to the hub from a hostile agent (agent false), or to the agent from
// a hostile hub. With raw, data is the WebSocket byte stream itself; else
// data is the yamux byte stream, sent in binary messages of chunk+1 bytes.
//
// Whatever arrives: nothing panics; if the input ends on a frame boundary
// the session either answers a ping sent after it or has ended; once the
// peer's connection closes the session ends with an error; Close leaves no
// goroutine behind; and what the session allocates is bounded by the input,
// never by a length the input claims.
func FuzzSessionInput(f *testing.F) {
	const (
		flagSYN, flagACK, flagFIN, flagRST = 0x1, 0x2, 0x4, 0x8
		typeData, typeWindow, typePing     = 0, 1, 2
	)
	h := yamuxHeader
	response := []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	request := []byte("GET /api HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, seed := range []struct {
		data       []byte
		agent, raw bool
		chunk      uint16
	}{
		// A hostile agent answering the hub's stream 1.
		{data: concat(h(typeWindow, flagACK, 1, 0), h(typeData, 0, 1, uint32(len(response))), response, h(typeData, flagFIN, 1, 0)), chunk: 7},
		{data: concat(h(typeWindow, flagACK, 1, 1<<31), h(typeWindow, 0, 1, 1<<31)), chunk: 100},
		{data: concat(h(typeData, flagRST, 1, 0), h(typeData, 0, 1, 3), []byte("abc")), chunk: 1},
		{data: concat(h(typeData, 0, 1, 1<<30)), chunk: 1000},                                     // claims a gigabyte
		{data: concat(h(typeData, 0, 7, 3), []byte("abc"), h(typePing, flagSYN, 0, 1)), chunk: 5}, // missing stream
		{data: concat(h(typeWindow, flagSYN, 2, 0), h(typeWindow, flagSYN, 2, 0)), chunk: 24},     // duplicate stream
		{data: concat(h(typeWindow, flagSYN, 1, 0)), chunk: 12},                                   // opens the hub's own ID
		{data: concat(h(yamuxTypeGoAway, 0, 0, 0), h(typePing, flagACK, 0, 9)), chunk: 30},
		{data: concat([]byte{1}, make([]byte, 11)), chunk: 12}, // bad version
		{data: concat(h(9, 0, 0, 0)), chunk: 12},               // unknown type
		// A hostile hub opening streams on the agent.
		{data: concat(h(typeWindow, flagSYN, 1, 0), h(typeData, 0, 1, uint32(len(request))), request), agent: true, chunk: 9},
		{data: concat(h(typeData, flagSYN, 3, 3), []byte("abc"), h(typeData, flagFIN|flagRST, 3, 0)), agent: true, chunk: 64},
		{data: concat(h(typeData, flagSYN, 5, MinStreamWindow+1)), agent: true, chunk: 512}, // beyond the window
		{data: bytes.Repeat(h(typeWindow, flagSYN, 0, 0), 3), agent: true, chunk: 36},
		// The WebSocket layer itself.
		{data: wsMessages(h(typePing, flagSYN, 0, 5), 100, true), raw: true},
		{data: wsFrame(0x1, []byte("text"), true), raw: true},
		{data: wsFrame(0x8, []byte{0x03, 0xe8}, true), raw: true},
		{data: wsFrame(0x9, []byte("ping"), true), raw: true},
		{data: wsFrame(0x2, []byte("unmasked from a client"), false), raw: true},
		{data: []byte{0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0}, raw: true}, // 2^63 bytes
		{data: []byte{0x02, 0x83, 0, 0, 0, 0, 'a', 'b', 'c', 0x80, 0x83, 0, 0, 0, 0, 'd', 'e', 'f'}, raw: true},
		{data: wsFrame(0x2, []byte("to the agent"), false), agent: true, raw: true},
		{data: []byte{0x82, 0x7f, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, agent: true, raw: true},
	} {
		f.Add(seed.data, seed.agent, seed.raw, seed.chunk)
	}

	hubAddr, sessions := fuzzHub(f)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })

	f.Fuzz(func(t *testing.T, data []byte, agent, raw bool, chunk uint16) {
		leaks := goleak.IgnoreCurrent()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)

		var (
			c    net.Conn
			br   *bufio.Reader
			sess *Session
			wg   sync.WaitGroup
		)
		if agent {
			c, br, sess = rawHub(t, l)
			// The agent serves whatever streams the hub opens.
			wg.Go(func() {
				for {
					s, err := sess.Accept()
					if err != nil {
						return
					}
					wg.Go(func() {
						defer s.Close()
						_, _ = io.Copy(io.Discard, s)
					})
				}
			})
		} else {
			c, br, sess = rawAgent(t, hubAddr, sessions)
			// The hub opens a stream and sends a request, as the gateway does.
			ctx, cancel := context.WithTimeout(context.Background(), hang)
			s, err := sess.Open(ctx)
			cancel()
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			wg.Go(func() {
				defer s.Close()
				_ = s.SetWriteDeadline(time.Now().Add(hang))
				_, _ = s.Write(request)
				_, _ = io.Copy(io.Discard, s)
			})
		}
		defer c.Close()
		fr := readFrames(br)

		input := data
		if !raw {
			input = wsMessages(data, int(chunk)+1, !agent)
		}
		_ = c.SetWriteDeadline(time.Now().Add(hang))
		_, _ = c.Write(input)

		if !raw && yamuxFramesComplete(data) {
			_, _ = c.Write(wsFrame(0x2, yamuxHeader(typePing, flagSYN, 0, fuzzPingID), !agent))
			select {
			case <-fr.pong:
			case <-sess.Done():
			case <-time.After(hang):
				t.Fatal("after whole frames, the session neither answered a ping nor ended")
			}
		}

		c.Close()
		select {
		case <-sess.Done():
		case <-time.After(hang):
			t.Fatal("the session did not end when its peer's connection closed")
		}
		if sess.Err() == nil {
			t.Error("the session ended without an error")
		}
		_ = sess.Close()
		wg.Wait()
		<-fr.done

		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		if got, limit := after.TotalAlloc-before.TotalAlloc, uint64(8<<20+256*len(data)); got > limit {
			t.Errorf("the session allocated %d bytes for %d bytes of input, more than %d", got, len(data), limit)
		}
		goleak.VerifyNone(t, leaks)
	})
}

// FuzzDialResponse: whatever a hub answers to the agent's upgrade, Dial
// returns promptly, and it succeeds only on a 101 that selected exactly
// Subprotocol. Any other status is a *HandshakeError with that status and a
// message that is safe to log.
func FuzzDialResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: tether.tunnel.v1\r\nX-Tether-Mode: hub-rbac\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nSec-WebSocket-Protocol: TETHER.TUNNEL.V1\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: wrong\r\nSec-WebSocket-Protocol: tether.tunnel.v1\r\n\r\n",
		"HTTP/1.1 410 Gone\r\nContent-Type: application/json\r\nContent-Length: 99\r\n\r\n{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"cluster deleted\",\"code\":410}",
		"HTTP/1.1 401 Unauthorized\r\nContent-Length: 21\r\n\r\n\x1b[31mred\x00\u202enul\xff\xfe",
		"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 999 Whatever\r\n\r\n",
		"HTTP/1.1 101\r\n\r\n",
		"HTTP/1.0 302 Found\r\nLocation: http://elsewhere/\r\n\r\n",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"",
	} {
		f.Add([]byte(s))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { l.Close() })
	// Redirects are not followed: the hub's answer is taken as it is.
	client := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	f.Cleanup(client.CloseIdleConnections)

	f.Fuzz(func(t *testing.T, answer []byte) {
		served := make(chan []byte, 1) // the answer as sent
		go func() {
			c, err := l.Accept()
			if err != nil {
				served <- nil
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(hang))
			req, err := http.ReadRequest(bufio.NewReader(c))
			if err != nil {
				served <- nil
				return
			}
			out := bytes.ReplaceAll(answer, []byte(acceptPlaceholder), []byte(wsAccept(req.Header.Get("Sec-WebSocket-Key"))))
			_, _ = c.Write(out)
			served <- out
		}()
		ctx, cancel := context.WithTimeout(context.Background(), hang)
		defer cancel()
		sess, err := Dial(ctx, DialConfig{URL: "ws://" + l.Addr().String() + "/tunnel", Client: client, HandshakeTimeout: hang})
		sent := <-served
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial did not return when the hub closed the connection: %v", err)
		}
		resp, perr := finalResponse(sent)
		if err == nil {
			defer sess.Close()
			if perr != nil || resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("Dial succeeded on an answer that is not a 101: %q", sent)
			}
			if got := sess.HandshakeHeader().Get("Sec-WebSocket-Protocol"); got != Subprotocol {
				t.Fatalf("Dial succeeded with subprotocol %q", got)
			}
			return
		}
		var he *HandshakeError
		if !errors.As(err, &he) {
			return
		}
		if perr != nil || he.StatusCode != resp.StatusCode || he.StatusCode == http.StatusSwitchingProtocols {
			t.Fatalf("HandshakeError for status %d, answer %q", he.StatusCode, sent)
		}
		msg := he.Error()
		if len(he.Message) > maxHandshakeMessage || !utf8.ValidString(msg) || strings.IndexFunc(msg, unicode.IsControl) >= 0 {
			t.Fatalf("HandshakeError message %q is not safe to log", msg)
		}
	})
}

// finalResponse reads the response an HTTP client acts on from b: the
// first that is not an informational 1xx (101 aside), which clients skip.
func finalResponse(b []byte) (*http.Response, error) {
	br := bufio.NewReader(bytes.NewReader(b))
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode < 100 || resp.StatusCode > 199 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, err
		}
	}
}

// FuzzAcceptRequest: whatever headers an upgrade request to the hub
// carries, Accept makes a session only for a request that offered exactly
// Subprotocol, and the 101 then selects it; everything else is refused
// with a response that is not a 101 (a Status from Refuse, when the tunnel
// itself refuses).
func FuzzAcceptRequest(f *testing.F) {
	base := "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Version: 13\r\n"
	for _, s := range []string{
		base + "Sec-WebSocket-Protocol: tether.tunnel.v1\r\n",
		base + "Sec-WebSocket-Protocol: other, tether.tunnel.v1\r\n",
		base + "Sec-WebSocket-Protocol: other\r\nSec-WebSocket-Protocol:  tether.tunnel.v1 \r\n",
		base + "Sec-WebSocket-Protocol: TETHER.TUNNEL.V1, tether.tunnel.v1\r\n",
		base + "Sec-WebSocket-Protocol: TETHER.TUNNEL.V1\r\n",
		base + "Sec-WebSocket-Protocol: tether.tunnel.v1x\r\n",
		base + "Sec-WebSocket-Protocol: tether.tunnel.v1\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n",
		"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Protocol: tether.tunnel.v1\r\n",
		"Sec-WebSocket-Protocol: tether.tunnel.v1\r\n",
		base,
		"",
	} {
		f.Add([]byte(s))
	}
	type result struct {
		offered bool
		err     error
	}
	results := make(chan result, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offered := false
		for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
			for _, p := range strings.Split(v, ",") {
				offered = offered || strings.Trim(p, " \t") == Subprotocol
			}
		}
		s, err := Accept(w, r, Config{})
		results <- result{offered, err}
		if err == nil {
			_ = s.Close() // the client has hung up by now: no close handshake to wait for
		}
	}))
	f.Cleanup(srv.Close)

	f.Fuzz(func(t *testing.T, headers []byte) {
		if bytes.Contains(headers, []byte("\r\n\r\n")) || bytes.HasPrefix(headers, []byte("\r\n")) {
			return // the end of the header block is ours to write
		}
		c, err := net.DialTimeout("tcp", srv.Listener.Addr().String(), hang)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(hang))
		req := concat([]byte("GET /tunnel HTTP/1.1\r\nHost: hub\r\n"), headers)
		if len(headers) > 0 && !bytes.HasSuffix(headers, []byte("\r\n")) {
			req = append(req, "\r\n"...)
		}
		req = append(req, "\r\n"...)
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("no response: %v", err)
		}
		defer resp.Body.Close()
		// A handler's refusal reaches the client only once the handler has
		// returned, after it reported; a 101 is sent before Accept returns.
		var r result
		if resp.StatusCode == http.StatusSwitchingProtocols {
			select {
			case r = <-results:
			case <-time.After(hang):
				t.Fatal("101 without a session")
			}
		} else {
			select {
			case r = <-results:
			default:
				return // net/http refused the request: the handler never ran
			}
		}
		if (resp.StatusCode == http.StatusSwitchingProtocols) != (r.err == nil) {
			t.Fatalf("status %d, Accept error %v", resp.StatusCode, r.err)
		}
		if r.err == nil {
			if !r.offered {
				t.Fatalf("Accept made a session for a request that did not offer %s exactly", Subprotocol)
			}
			if got := resp.Header.Get("Sec-WebSocket-Protocol"); !strings.EqualFold(got, Subprotocol) {
				t.Fatalf("the 101 selected %q", got)
			}
			return
		}
		if errors.Is(r.err, ErrNotTunnel) {
			body, _ := io.ReadAll(resp.Body)
			var st status
			if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" || st.Code != resp.StatusCode {
				t.Fatalf("refusal %d %q is not a Status", resp.StatusCode, body)
			}
		}
	})
}
