package hub

import (
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"

	"tether.dev/tether/internal/apistatus"
)

// Watches still open when a draining replica's grace is over are ended
// with a reason the client can read: a last watch event of type ERROR
// carrying a Status, written when the stream is between events (the API
// server sends one JSON event per line). kubectl get -w prints it; client-go
// informers watch again, through another replica. Streams of other kinds
// (protobuf watches, logs, exec) are simply closed.

// watchEnder is a watch response that can be ended between events.
type watchEnder struct {
	w       http.ResponseWriter
	mu      sync.Mutex
	json    bool // the response is a JSON watch stream
	between bool // the last byte written ends an event
	ended   bool
}

func newWatchEnder(w http.ResponseWriter) *watchEnder { return &watchEnder{w: w, between: true} }

func (e *watchEnder) Header() http.Header { return e.w.Header() }

func (e *watchEnder) WriteHeader(code int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ct := e.w.Header().Get("Content-Type")
	e.json = code == http.StatusOK && strings.Contains(ct, "json") // not a protobuf stream
	e.w.WriteHeader(code)
}

func (e *watchEnder) Write(b []byte) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return 0, net.ErrClosed
	}
	n, err := e.w.Write(b)
	if n > 0 {
		e.between = b[n-1] == '\n'
	}
	return n, err
}

func (e *watchEnder) Flush() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.ended {
		http.NewResponseController(e.w).Flush()
	}
}

// Unwrap lets http.ResponseController reach the server's writer.
func (e *watchEnder) Unwrap() http.ResponseWriter { return e.w }

// finish marks the handler done: nothing may be written after it, so end
// waits for a write in progress and then writes nothing. The handler
// defers it, so that it runs before the server finishes the response even
// when the handler panics.
func (e *watchEnder) finish() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ended = true
}

// end writes the ERROR event with message, if the stream is a JSON watch
// between events, and lets nothing more through.
func (e *watchEnder) end(message string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended {
		return
	}
	e.ended = true
	if !e.json || !e.between {
		return
	}
	ev, _ := json.Marshal(map[string]any{"type": "ERROR", "object": apistatus.Status(http.StatusServiceUnavailable, message)})
	e.w.Write(append(ev, '\n'))
	http.NewResponseController(e.w).Flush()
}

// streamSet holds the open watches of a replica.
type streamSet struct {
	mu sync.Mutex
	m  map[*watchEnder]struct{}
}

func (s *streamSet) add(e *watchEnder) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[*watchEnder]struct{}{}
	}
	s.m[e] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.m, e)
	}
}

// endAll ends every open watch with message and returns how many.
func (s *streamSet) endAll(message string) int {
	s.mu.Lock()
	all := make([]*watchEnder, 0, len(s.m))
	for e := range s.m {
		all = append(all, e)
	}
	s.mu.Unlock()
	for _, e := range all {
		e.end(message)
	}
	return len(all)
}

// isWatch reports whether r is a Kubernetes watch, by the API server's
// rule (access.ParseRequest, as the audit record read it): ?watch with any
// value but "0" or "false", or the old /watch/ path.
func isWatch(r *http.Request) bool { return recordOf(r).event.Verb == "watch" }
