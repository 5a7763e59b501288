package hub

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/upgrade"
)

// The audit trail: every request through the gateway, every upgraded
// session (when it starts and when it ends), every enrollment and every
// change through the admin API is one audit.Event, appended to the store's
// chain in batches by one goroutine (auditor.run) and, with Config.AuditLog,
// written there as a JSON line. Events hold no tokens, secrets or bodies.

// auditQueue bounds the events waiting to be written; past it events are
// counted as lost and logged (the store is down for long, or too slow).
const auditQueue = 8192

// auditor writes audit events.
type auditor struct {
	store   store.Store
	logger  interface{ Warn(string, ...any) }
	ch      chan audit.Event
	lost    atomic.Int64
	sinkMu  sync.Mutex
	sink    io.Writer // JSON lines; nil for none
	flushed chan struct{}
	// lostMetric counts the events lost (tether_hub_audit_events_lost_total);
	// nil for none. Set before run starts.
	lostMetric prometheus.Counter
}

// countLost adds n events to the lost events metric.
func (a *auditor) countLost(n int) {
	if a.lostMetric != nil {
		a.lostMetric.Add(float64(n))
	}
}

func newAuditor(st store.Store, sink io.Writer, logger interface{ Warn(string, ...any) }) *auditor {
	return &auditor{store: st, sink: sink, logger: logger, ch: make(chan audit.Event, auditQueue)}
}

// record queues e; it never blocks the request.
func (a *auditor) record(e audit.Event) {
	select {
	case a.ch <- e:
	default:
		a.countLost(1)
		if n := a.lost.Add(1); n == 1 || n%1000 == 0 {
			a.logger.Warn("audit events lost: the queue is full (is the store down?)", "lost", n)
		}
	}
}

// run writes queued events until ctx ends, then writes what is still
// queued (for up to flushFor) and returns.
func (a *auditor) run(ctx context.Context, flushFor time.Duration) {
	batch := make([]audit.Event, 0, 256)
	for {
		select {
		case e := <-a.ch:
			batch = append(batch[:0], e)
		case <-ctx.Done():
			a.drain(flushFor)
			return
		}
		batch = a.gather(ctx, batch)
		for !a.write(ctx, batch) {
			// The store is unavailable: keep the batch and try again.
			select {
			case <-ctx.Done():
				a.drain(flushFor)
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// auditGather is how long the writer waits for more events after the
// first of a batch: one transaction (and one fsync) per gathering rather
// than per request when requests come one at a time. Events reach the
// store that much later.
const auditGather = 20 * time.Millisecond

// gather adds to batch the events that arrive within auditGather, up to
// its capacity.
func (a *auditor) gather(ctx context.Context, batch []audit.Event) []audit.Event {
	t := time.NewTimer(auditGather)
	defer t.Stop()
	for len(batch) < cap(batch) {
		select {
		case e := <-a.ch:
			batch = append(batch, e)
		case <-t.C:
			return batch
		case <-ctx.Done():
			return a.fill(batch)
		}
	}
	return batch
}

// fill adds what is queued to batch, up to its capacity.
func (a *auditor) fill(batch []audit.Event) []audit.Event {
	for len(batch) < cap(batch) {
		select {
		case e := <-a.ch:
			batch = append(batch, e)
		default:
			return batch
		}
	}
	return batch
}

// drain writes what is queued, giving up after d.
func (a *auditor) drain(d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	batch := make([]audit.Event, 0, 256)
	for {
		batch = a.fill(batch[:0])
		if len(batch) == 0 {
			return
		}
		if !a.write(ctx, batch) {
			a.countLost(len(batch) + len(a.ch))
			a.logger.Warn("audit events lost at shutdown: the store did not take them", "lost", len(batch)+len(a.ch))
			return
		}
	}
}

// write appends batch to the store and the sink. It reports false when the
// store was unavailable (the batch is to be retried); events the store
// refuses otherwise are logged and go to the sink unchained.
func (a *auditor) write(ctx context.Context, batch []audit.Event) bool {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	stored, err := a.store.AppendAudit(wctx, batch)
	cancel()
	switch {
	case errors.Is(err, store.ErrUnavailable) || (errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil):
		return false // a store that is down or too slow: try again
	case errors.Is(err, store.ErrInvalid) && len(batch) > 1:
		// One bad event refuses the batch: write them one by one, so that
		// only the bad one is left out of the chain.
		for i := range batch {
			for !a.write(ctx, batch[i:i+1]) && ctx.Err() == nil {
				time.Sleep(time.Second)
			}
		}
		return true
	case err != nil:
		a.logger.Warn("audit events refused by the store", "events", len(batch), "err", err)
		stored = batch
	}
	if a.sink != nil {
		a.sinkMu.Lock()
		enc := json.NewEncoder(a.sink)
		for _, e := range stored {
			enc.Encode(e)
		}
		a.sinkMu.Unlock()
	}
	return true
}

// newRequestID returns a random request ID.
func newRequestID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// auditRecord is what the gateway learns of one request as it goes; the
// event is made from it when the request ends.
type auditRecord struct {
	event audit.Event
	start time.Time
	// began is start by the real clock (Config.Now may be a test's), for
	// the request's metrics and log line.
	began time.Time
	// kind is the request's kind if it is long-running (see
	// longRunningKind), else "".
	kind string
	// forwarded: the request went through the cluster's tunnel, so the
	// answer is the cluster's; otherwise it is the hub's own (a refusal or
	// a failure).
	forwarded bool
	// elsewhere: the request went to the replica holding the tunnel, which
	// records it.
	elsewhere bool
	// body is the request's body, counted; nil without one.
	body *countingBody
}

type auditKey struct{}

// recordOf returns the request's audit record, or a throwaway one.
func recordOf(r *http.Request) *auditRecord {
	if rec, ok := r.Context().Value(auditKey{}).(*auditRecord); ok {
		return rec
	}
	return &auditRecord{}
}

// setPrincipal records who the caller is.
func (rec *auditRecord) setPrincipal(id, typ, name string) {
	rec.event.PrincipalID, rec.event.PrincipalType, rec.event.PrincipalName = id, typ, name
}

// auditWriter counts what a handler answers, keeps the start of a refusal's
// body (its Status message), and counts the bytes of an upgraded
// connection.
type auditWriter struct {
	http.ResponseWriter
	status   int
	written  int64
	errBody  []byte // the first bytes of a 4xx/5xx answer
	hijacked *countingConn
	// onUpgrade is called when the handler takes the connection over: the
	// reverse proxy does so only to answer 101 Switching Protocols.
	onUpgrade func()
}

func (w *auditWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *auditWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if w.status >= 400 && len(w.errBody) < 2048 {
		w.errBody = append(w.errBody, b[:min(len(b), 2048-len(w.errBody))]...)
	}
	n, err := w.ResponseWriter.Write(b)
	w.written += int64(n)
	return n, err
}

func (w *auditWriter) Flush() { http.NewResponseController(w.ResponseWriter).Flush() }

// Hijack hands out the connection with its bytes counted.
func (w *auditWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.hijacked = &countingConn{Conn: c}
	w.status = http.StatusSwitchingProtocols
	// Writes through rw go to the counted conn too.
	if err := rw.Writer.Flush(); err != nil {
		c.Close()
		return nil, nil, err
	}
	rw.Writer.Reset(w.hijacked)
	if w.onUpgrade != nil {
		w.onUpgrade()
	}
	return w.hijacked, rw, nil
}

func (w *auditWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingConn counts the bytes through an upgraded connection.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.out.Add(int64(n))
	return n, err
}

// countingBody counts the request body's bytes, and notes a body the
// client broke (bad chunking, cut short), so that the failure is answered
// as the client's, not the tunnel's.
type countingBody struct {
	io.ReadCloser
	n      atomic.Int64
	broken atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err != nil && err != io.EOF {
		b.broken.Store(true)
	}
	return n, err
}

// startAudit begins the audit record of a gateway request for cluster id
// (its client and request ID are corrected when another replica forwarded
// it):
// it returns the request to pass on (with the record in its context and
// the body counted) and the writer to answer through, and a func to call
// when the request is done.
func (h *Hub) startAudit(w http.ResponseWriter, r *http.Request, id string) (*auditWriter, *http.Request, func()) {
	rec := &auditRecord{start: h.cfg.Now(), began: time.Now()}
	reqID := newRequestID()
	attrs := access.ParseRequest(r.Method, strings.TrimPrefix(r.URL.Path, "/k8s/"+r.PathValue("group")+"/"+r.PathValue("cluster")), r.URL.Query())
	rec.kind = access.LongRunningKind(attrs.Verb, attrs.Subresource, upgrade.IsUpgrade(r.Header))
	rec.event = audit.Event{
		Time: rec.start, Type: audit.TypeRequest, RequestID: reqID, Replica: h.cfg.Replica,
		SourceAddr: r.RemoteAddr, Cluster: id,
		Verb: attrs.Verb, APIGroup: attrs.APIGroup, Resource: attrs.ResourceName, Subresource: attrs.Subresource,
		Namespace: attrs.Namespace, Name: attrs.Name, Path: attrs.Path,
	}
	w.Header().Set("X-Request-Id", reqID)
	body := &countingBody{ReadCloser: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = body
		rec.body = body
	}
	aw := &auditWriter{ResponseWriter: w}
	aw.onUpgrade = func() {
		e := rec.event
		e.Type, e.Status, e.Decision = audit.TypeSessionStart, http.StatusSwitchingProtocols, audit.DecisionAllow
		h.audit.record(clean(e))
	}
	r = r.WithContext(context.WithValue(r.Context(), auditKey{}, rec))
	return aw, r, func() {
		took := time.Since(rec.began)
		if rec.elsewhere {
			// The replica that served it records it, counts it and logs
			// it, with the same request ID.
			h.logger.Debug("request forwarded", "request_id", rec.event.RequestID, "cluster", id, "code", aw.status,
				"duration_ms", took.Milliseconds())
			return
		}
		e := rec.event
		e.Duration = h.cfg.Now().Sub(rec.start)
		e.Status = aw.status
		e.BytesIn = body.n.Load()
		e.BytesOut = aw.written
		if aw.hijacked != nil {
			e.Type = audit.TypeSessionEnd
			e.BytesIn += aw.hijacked.in.Load()
			e.BytesOut += aw.hijacked.out.Load()
		}
		switch {
		case rec.forwarded:
			// Forwarded: the hub allowed it, whatever the cluster answered
			// (0: the client went away before an answer).
			e.Decision = audit.DecisionAllow
		case aw.status >= 500 || aw.status == 0:
			e.Decision, e.Reason = audit.DecisionError, statusText(aw.errBody, e.Reason)
		case aw.status >= 400:
			e.Decision, e.Reason = audit.DecisionDeny, statusText(aw.errBody, e.Reason)
		default:
			e.Decision = audit.DecisionAllow
		}
		h.audit.record(clean(e))
		h.metrics.request(access.MetricVerb(e.Verb, e.Subresource), rec.kind, e.Status, took)
		h.logRequest(e, took)
	}
}

// logRequest writes a gateway request's log line: at Debug, unless the
// hub refused it (Info), failed or the cluster answered 5xx (Warn), or the
// cluster denied it (Info). Its request_id is the audit event's; it names
// the caller by object ID and type, never by name or token.
func (h *Hub) logRequest(e audit.Event, took time.Duration) {
	level := slog.LevelDebug
	switch {
	case e.Decision == audit.DecisionError || e.Status >= 500:
		level = slog.LevelWarn
	case e.Decision == audit.DecisionDeny || e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden:
		level = slog.LevelInfo
	}
	if !h.logger.Enabled(context.Background(), level) {
		return
	}
	attrs := []slog.Attr{
		slog.String("request_id", e.RequestID),
		slog.String("cluster", e.Cluster),
		slog.String("verb", e.Verb),
		slog.String("resource", e.Resource),
	}
	if e.Subresource != "" {
		attrs = append(attrs, slog.String("subresource", e.Subresource))
	}
	if e.Namespace != "" {
		attrs = append(attrs, slog.String("namespace", e.Namespace))
	}
	attrs = append(attrs,
		slog.Int("code", e.Status),
		slog.String("decision", e.Decision),
		slog.Int64("duration_ms", took.Milliseconds()),
		slog.String("principal", e.PrincipalID),
		slog.String("principal_type", e.PrincipalType),
	)
	if e.Decision != audit.DecisionAllow && e.Reason != "" {
		attrs = append(attrs, slog.String("reason", e.Reason))
	}
	h.logger.LogAttrs(context.Background(), level, "request", attrs...)
}

// statusText returns the message of the Status in body, or fallback.
func statusText(body []byte, fallback string) string {
	var st struct{ Message string }
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	return fallback
}

// clean makes e fit the store: text clipped to MaxAuditFieldLen, control
// characters replaced.
func clean(e audit.Event) audit.Event {
	for _, f := range []*string{&e.RequestID, &e.PrincipalID, &e.PrincipalType, &e.PrincipalName, &e.SourceAddr, &e.Cluster,
		&e.AuthMode, &e.Reason, &e.Verb, &e.APIGroup, &e.Resource, &e.Subresource, &e.Namespace, &e.Name, &e.Path} {
		*f = clipText(*f, store.MaxAuditFieldLen)
	}
	return e
}

// tokenSubject returns the unverified sub claim of a JWT that looks like a
// Kubernetes service-account token, for the audit trail's principal name
// (the API server verifies it; the hub passes it on); "" otherwise.
func tokenSubject(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var c struct{ Sub string }
	if json.Unmarshal(b, &c) != nil || !strings.HasPrefix(c.Sub, "system:serviceaccount:") {
		return ""
	}
	return c.Sub
}
