package tunnel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestAfterEnd: functions registered with AfterEnd run once the session
// has ended, whatever ended it, each exactly once, with Done closed and
// Err saying why; one registered after the end runs at once.
func TestAfterEnd(t *testing.T) {
	tests := []struct {
		name string
		end  func(hub, agent *Session)
		want error
	}{
		{name: "closed", end: func(hub, _ *Session) { hub.Close() }, want: net.ErrClosed},
		{name: "closed by the peer", end: func(_, agent *Session) { agent.Close() }, want: ErrPeerClosed},
		{name: "closed twice", end: func(hub, _ *Session) { hub.Close(); hub.Close() }, want: net.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hub, agent := newPair(t, pairOptions{})
			type run struct {
				Name    string
				Done    bool
				WantErr bool
			}
			var (
				mu   sync.Mutex
				runs []run
				wg   sync.WaitGroup
			)
			record := func(name string) func() {
				wg.Add(1)
				return func() {
					defer wg.Done()
					mu.Lock()
					runs = append(runs, run{Name: name, Done: isClosed(hub.Done()), WantErr: errors.Is(hub.Err(), tt.want)})
					mu.Unlock()
				}
			}
			hub.AfterEnd(record("first"))
			hub.AfterEnd(record("second"))
			tt.end(hub, agent)
			waitClosed(t, "the session to end", hub.Done())
			hub.AfterEnd(record("after the end"))
			waitGroup(t, "the functions to run", &wg)
			hub.Close() // ends nothing more, runs nothing again

			mu.Lock()
			defer mu.Unlock()
			want := []run{{"first", true, true}, {"second", true, true}, {"after the end", true, true}}
			less := func(a, b run) bool { return a.Name < b.Name }
			if diff := cmp.Diff(want, runs, cmpopts.SortSlices(less)); diff != "" {
				t.Errorf("runs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestKeepAliveRepeats: the keepalive pings again after each answer, for as
// long as the peer answers, and the session lives on.
func TestKeepAliveRepeats(t *testing.T) {
	p := newHostilePeer(t, Config{KeepAliveInterval: 10 * time.Millisecond, KeepAliveTimeout: hang})
	ctx, cancel := context.WithTimeout(context.Background(), hang)
	defer cancel()
	answered := 0
	for answered < 5 {
		_, b, err := p.ws.Read(ctx)
		if err != nil {
			t.Fatalf("read after %d pings answered: %v (session: %v)", answered, err, p.hub.Err())
		}
		for len(b) >= yamuxHeaderSize {
			h := b[:yamuxHeaderSize]
			b = b[yamuxHeaderSize:]
			if h[1] != yamuxTypePing || binary.BigEndian.Uint16(h[2:4])&yamuxFlagSYN == 0 {
				continue
			}
			p.send(t, header(yamuxTypePing, yamuxFlagACK, 0, binary.BigEndian.Uint32(h[8:12])))
			answered++
		}
	}
	if err := p.hub.Err(); err != nil {
		t.Errorf("the session ended: %v", err)
	}
}

// TestKeepAliveUnanswered: a ping the peer does not answer ends the
// session with ErrKeepAliveTimeout.
func TestKeepAliveUnanswered(t *testing.T) {
	p := newHostilePeer(t, Config{KeepAliveInterval: 10 * time.Millisecond, KeepAliveTimeout: 50 * time.Millisecond})
	// Read (and drop) what the hub sends, so that its writes do not stall.
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(io.Discard, websocket.NetConn(context.Background(), p.ws, websocket.MessageBinary))
	}()
	waitClosed(t, "the session to end", p.hub.Done())
	if !errors.Is(p.hub.Err(), ErrKeepAliveTimeout) {
		t.Errorf("session ended with %v, want %v", p.hub.Err(), ErrKeepAliveTimeout)
	}
	waitClosed(t, "the peer to read the end", read)
}

// TestIdleSessionGoroutines: between keepalive pings an idle session has no
// goroutine of its own waiting for the next one; only yamux's receive and
// send loops run.
func TestIdleSessionGoroutines(t *testing.T) {
	hub, agent := newPair(t, pairOptions{cfg: Config{KeepAliveInterval: time.Hour}})
	buf := make([]byte, 1<<20)
	stacks := string(buf[:runtime.Stack(buf, true)])
	if strings.Contains(stacks, "tunnel.(*Session).keepalive") {
		t.Error("a goroutine waits in the keepalive while the session is idle")
	}
	if err := errors.Join(hub.Err(), agent.Err()); err != nil {
		t.Errorf("a session ended: %v", err)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// waitGroup fails the test unless wg is done within hang.
func waitGroup(t testing.TB, what string, wg *sync.WaitGroup) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	waitClosed(t, what, done)
}
