package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The tests here play a hostile peer that speaks raw WebSocket and writes
// yamux frames by hand, against the hub's end of a tunnel (Accept). The
// hub's side only ever opens streams; everything here is what an agent (or
// whoever holds an agent's key) could send instead.

const yamuxTypeWindowUpdate = 1

// header is a yamux frame header with flags.
func header(typ byte, flags uint16, streamID, length uint32) []byte {
	b := frame(typ, streamID, length, nil)
	binary.BigEndian.PutUint16(b[2:4], flags)
	return b
}

// hostilePeer is the raw WebSocket end of a tunnel whose other end, hub, is
// a real Session.
type hostilePeer struct {
	hub *Session
	ws  *websocket.Conn
}

func newHostilePeer(t *testing.T, cfg Config) *hostilePeer {
	t.Helper()
	accepted := make(chan *Session, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := Accept(w, r, cfg)
		if err != nil {
			t.Errorf("Accept: %v", err)
			return
		}
		accepted <- s
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, wsURL(srv.URL), &websocket.DialOptions{Subprotocols: []string{Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(-1)
	p := &hostilePeer{ws: ws}
	select {
	case p.hub = <-accepted:
	case <-time.After(hang):
		ws.CloseNow()
		t.Fatal("no session accepted")
	}
	t.Cleanup(func() {
		ws.CloseNow() // first: the hub's close needs no answer then
		p.hub.Close()
	})
	return p
}

// send writes b as one binary message.
func (p *hostilePeer) send(t *testing.T, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	if err := p.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readFrames reads what the hub sends until a ping ACK with id arrives,
// and reports whether it did (false: the session ended first).
func (p *hostilePeer) pingAnswered(t *testing.T, id uint32) bool {
	t.Helper()
	p.send(t, header(yamuxTypePing, yamuxFlagSYN, 0, id))
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	var buf []byte
	for {
		_, r, err := p.ws.Reader(ctx)
		if err != nil {
			return false
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return false
		}
		buf = append(buf, b...)
		for len(buf) >= yamuxHeaderSize {
			h := buf[:yamuxHeaderSize]
			n := yamuxHeaderSize
			if h[1] == yamuxTypeData {
				n += int(binary.BigEndian.Uint32(h[8:12]))
			}
			if len(buf) < n {
				break
			}
			if h[1] == yamuxTypePing && binary.BigEndian.Uint16(h[2:4])&yamuxFlagACK != 0 && binary.BigEndian.Uint32(h[8:12]) == id {
				return true
			}
			buf = buf[n:]
		}
	}
}

// TestHostileFrames: frames that break the protocol end the session at
// once (every stream with it); frames that are merely pointless are
// ignored and the session goes on.
func TestHostileFrames(t *testing.T) {
	ends := []struct {
		name  string
		frame []byte
	}{
		{name: "unknown protocol version", frame: append([]byte{1}, header(yamuxTypePing, yamuxFlagSYN, 0, 1)[1:]...)},
		{name: "unknown frame type", frame: header(9, 0, 0, 0)},
		{name: "data beyond the initial window", frame: header(yamuxTypeData, yamuxFlagSYN, 2, MinStreamWindow+1)},
		{name: "a 4 GiB data frame", frame: header(yamuxTypeData, yamuxFlagSYN, 2, 1<<32-1)},
		{name: "the same stream opened twice", frame: concat(header(yamuxTypeWindowUpdate, yamuxFlagSYN, 2, 0), header(yamuxTypeWindowUpdate, yamuxFlagSYN, 2, 0))},
		{name: "go away: protocol error", frame: header(yamuxTypeGoAway, 0, 0, 1)},
		{name: "go away: internal error", frame: header(yamuxTypeGoAway, 0, 0, 2)},
		{name: "go away with an unknown code", frame: header(yamuxTypeGoAway, 0, 0, 77)},
	}
	for _, tt := range ends {
		t.Run("ends the session: "+tt.name, func(t *testing.T) {
			p := newHostilePeer(t, Config{})
			p.send(t, tt.frame)
			waitClosed(t, "the session to end", p.hub.Done())
			if p.hub.Err() == nil {
				t.Error("the session ended without a reason")
			}
			if _, err := p.hub.Open(context.Background()); err == nil {
				t.Error("Open succeeded on the ended session")
			}
		})
	}
	ignored := []struct {
		name  string
		frame []byte
	}{
		{name: "data for a stream never opened", frame: concat(header(yamuxTypeData, 0, 40, 5), []byte("hello"))},
		{name: "a reset for a stream never opened", frame: header(yamuxTypeWindowUpdate, 8, 42, 0)},
		{name: "a window update overflowing the window", frame: concat(header(yamuxTypeWindowUpdate, yamuxFlagSYN, 44, 0), header(yamuxTypeWindowUpdate, 0, 44, 1<<32-1), header(yamuxTypeWindowUpdate, 0, 44, 1<<32-1))},
		{name: "a ping answer nobody asked for", frame: header(yamuxTypePing, yamuxFlagACK, 0, 12345)},
		{name: "an empty message", frame: []byte{}},
	}
	for _, tt := range ignored {
		t.Run("ignored: "+tt.name, func(t *testing.T) {
			p := newHostilePeer(t, Config{})
			p.send(t, tt.frame)
			if !p.pingAnswered(t, 7) {
				t.Fatalf("the session ended: %v", p.hub.Err())
			}
			if p.hub.Err() != nil {
				t.Errorf("session error %v", p.hub.Err())
			}
		})
	}
}

// TestStreamOpenFlood: an agent must not open streams; one that opens ten
// thousand gets at most the accept backlog held (never accepted, since the
// hub accepts nothing) and the rest reset, and the session goes on.
func TestStreamOpenFlood(t *testing.T) {
	p := newHostilePeer(t, Config{})
	before := runtime.NumGoroutine()
	const opens = 10_000
	// The hub answers the refused opens with resets: read and count them,
	// as a peer that wants to keep its session would. (Every frame the hub
	// sends here is a header of its own message.)
	var resets atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			_, b, err := p.ws.Read(ctx)
			if err != nil {
				return
			}
			for ; len(b) >= yamuxHeaderSize; b = b[yamuxHeaderSize:] {
				if b[1] == yamuxTypeWindowUpdate && binary.BigEndian.Uint16(b[2:4])&8 != 0 {
					resets.Add(1)
				}
			}
		}
	}()
	var batch []byte
	for i := range opens {
		batch = append(batch, header(yamuxTypeWindowUpdate, yamuxFlagSYN, uint32(2*(i+1)), 0)...)
		if len(batch) >= 64<<10 {
			p.send(t, batch)
			batch = nil
		}
	}
	p.send(t, batch)
	waitFor(t, "a reset for every open beyond the backlog", func() bool { return resets.Load() >= opens-acceptBacklog })
	if n := p.hub.NumStreams(); n > acceptBacklog {
		t.Errorf("%d streams held after %d opens; want at most the backlog of %d", n, opens, acceptBacklog)
	}
	if g := runtime.NumGoroutine(); g > before+50 {
		t.Errorf("goroutines went from %d to %d", before, g)
	}
	if err := p.hub.Err(); err != nil {
		t.Errorf("the session ended: %v", err)
	}
}

// TestPingFlood: a peer that sends pings as fast as it can and never reads
// the answers. yamux answers each from a goroutine of its own; the session
// ends before they pile up (maxUnansweredPings), where without the bound
// a second of flooding left ten thousand goroutines waiting.
func TestPingFlood(t *testing.T) {
	p := newHostilePeer(t, Config{})
	before := runtime.NumGoroutine()
	batch := make([]byte, 0, 64<<10)
	for i := 0; len(batch)+yamuxHeaderSize <= cap(batch); i++ {
		batch = append(batch, header(yamuxTypePing, yamuxFlagSYN, 0, uint32(i))...)
	}
	peak := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		err := p.ws.Write(ctx, websocket.MessageBinary, batch)
		peak = max(peak, runtime.NumGoroutine()-before)
		if err != nil || p.hub.Err() != nil {
			break
		}
	}
	waitClosed(t, "the session to end", p.hub.Done())
	if !errors.Is(p.hub.Err(), errPingFlood) {
		t.Errorf("session ended with %v, want %v", p.hub.Err(), errPingFlood)
	}
	if peak > 2*maxUnansweredPings {
		t.Errorf("the ping flood grew the goroutines by %d; want a bound that does not depend on the peer", peak)
	}
}

// TestFrequentPings: a peer that pings often but reads the answers keeps
// its session.
func TestFrequentPings(t *testing.T) {
	hub, agent := newPair(t, pairOptions{cfg: Config{KeepAliveInterval: 5 * time.Millisecond}})
	serveEcho(t, agent)
	for i := range 20 {
		roundTrip(t, open(t, hub), fmt.Sprintf("still there %d\n", i))
		time.Sleep(10 * time.Millisecond) // let pings pass meanwhile
	}
	if err := errors.Join(hub.Err(), agent.Err()); err != nil {
		t.Errorf("a session ended: %v", err)
	}
}
