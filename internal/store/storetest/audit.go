package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// auditEvent is a valid audit event at t0+d, with junk in the fields that
// the store sets (Seq, PrevHash, Hash).
func auditEvent(d time.Duration, typ, cluster, principal, verb, decision string) audit.Event {
	return audit.Event{
		Seq:         99,
		Time:        at(d),
		Type:        typ,
		RequestID:   fmt.Sprintf("req-%d", d),
		Replica:     "hub-0",
		PrincipalID: principal,
		Cluster:     cluster,
		Decision:    decision,
		Verb:        verb,
		PrevHash:    []byte("junk"),
		Hash:        []byte("junk"),
	}
}

// request is a valid request event at t0+d, of a principal that is allowed.
func request(d time.Duration, verb string) audit.Event {
	return auditEvent(d, audit.TypeRequest, store.ClusterID("prod", "web"), pid(1), verb, audit.DecisionAllow)
}

// chained returns events as AppendAudit stores them after the event seq
// whose hash is prev: numbered from seq+1, times stored, each chained to
// the one before.
func chained(events []audit.Event, seq int64, prev []byte) []audit.Event {
	want := make([]audit.Event, len(events))
	for i, e := range events {
		e.Seq = seq + int64(i) + 1
		e.Time = stored(e.Time)
		e.PrevHash = prev
		e.Hash = e.ComputeHash(prev)
		want[i] = e
		prev = e.Hash
	}
	return want
}

// cloneEvents returns a deep copy of events.
func cloneEvents(events []audit.Event) []audit.Event {
	clones := slices.Clone(events)
	for i := range clones {
		clones[i].PrevHash = bytes.Clone(clones[i].PrevHash)
		clones[i].Hash = bytes.Clone(clones[i].Hash)
	}
	return clones
}

// zeroHash is the PrevHash of the first event.
func zeroHash() []byte { return make([]byte, audit.HashSize) }

// mustAppend appends events and returns them as stored.
func mustAppend(t *testing.T, s store.Store, events ...audit.Event) []audit.Event {
	t.Helper()
	got, err := s.AppendAudit(t.Context(), events)
	if err != nil {
		t.Fatalf("AppendAudit(%d events): %v", len(events), err)
	}
	return got
}

// mustListAudit lists the events that f selects.
func mustListAudit(t *testing.T, s store.Store, f store.AuditFilter) []audit.Event {
	t.Helper()
	got, err := s.ListAudit(t.Context(), f)
	if err != nil {
		t.Fatalf("ListAudit(%+v): %v", f, err)
	}
	return got
}

// seqs returns the events' Seq.
func seqs(events []audit.Event) []int64 {
	var ss []int64
	for _, e := range events {
		ss = append(ss, e.Seq)
	}
	return ss
}

// span returns from, from+1, ..., to.
func span(from, to int64) []int64 {
	var ss []int64
	for s := from; s <= to; s++ {
		ss = append(ss, s)
	}
	return ss
}

func testAppendAudit(t *testing.T, s store.Store) {
	ctx := t.Context()

	// An empty store has no events, and an empty chain verifies.
	got, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil || len(got) != 0 {
		t.Fatalf("ListAudit of an empty store = %v, %v; want no events", seqs(got), err)
	}
	for _, events := range [][]audit.Event{nil, {}} {
		got, err := s.AppendAudit(ctx, events)
		if err != nil || len(got) != 0 {
			t.Errorf("AppendAudit(%#v) = %v, %v; want no events", events, seqs(got), err)
		}
	}
	if got := mustListAudit(t, s, store.AuditFilter{}); len(got) != 0 {
		t.Fatalf("ListAudit after appending no events = %v, want none", seqs(got))
	}

	first := []audit.Event{request(0, "get"), request(time.Second, "list"), request(time.Second, "watch")}
	input := cloneEvents(first)
	want := chained(first, 0, zeroHash())
	got = mustAppend(t, s, first...)
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("AppendAudit returned (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(input, first, opts); diff != "" {
		t.Errorf("AppendAudit changed its argument (-before +after):\n%s", diff)
	}
	listed := mustListAudit(t, s, store.AuditFilter{})
	if diff := cmp.Diff(want, listed, opts); diff != "" {
		t.Errorf("ListAudit after the first append (-want +got):\n%s", diff)
	}
	if err := audit.Verify(listed, nil); err != nil {
		t.Errorf("Verify after the first append: %v", err)
	}

	// The second append continues the chain.
	second := []audit.Event{request(time.Minute, "delete"), request(2*time.Minute, "get")}
	want = append(want, chained(second, 3, want[2].Hash)...)
	got = mustAppend(t, s, second...)
	if diff := cmp.Diff(want[3:], got, opts); diff != "" {
		t.Errorf("second AppendAudit returned (-want +got):\n%s", diff)
	}
	listed = mustListAudit(t, s, store.AuditFilter{})
	if diff := cmp.Diff(want, listed, opts); diff != "" {
		t.Errorf("ListAudit after the second append (-want +got):\n%s", diff)
	}
	if err := audit.Verify(listed, nil); err != nil {
		t.Errorf("Verify after the second append: %v", err)
	}
}

// testAuditFields checks that every field round-trips, at its largest.
func testAuditFields(t *testing.T, s store.Store) {
	full := audit.Event{
		Seq:           7,
		Time:          at(90 * time.Minute),
		Type:          audit.TypeSessionEnd,
		RequestID:     "0f8e2c1a-req",
		Replica:       "hub-2.hub.tether.svc",
		PrincipalID:   pid(3),
		PrincipalType: "servicePrincipal",
		PrincipalName: "Déploiement ✓",
		SourceAddr:    "[2001:db8::1]:54321",
		Cluster:       store.ClusterID("prod", "web"),
		AuthMode:      "hub-rbac",
		Decision:      audit.DecisionAllow,
		Reason:        "role Cluster Admin at /groups/prod",
		Verb:          "create",
		APIGroup:      "apps",
		Resource:      "pods",
		Subresource:   "exec",
		Namespace:     "kube-system",
		Name:          "coredns-7db6d8ff4d-x2k9p",
		Path:          "/api/v1/namespaces/kube-system/pods/coredns-7db6d8ff4d-x2k9p/exec",
		Status:        101,
		BytesIn:       1<<40 + 1,
		BytesOut:      math.MaxInt64,
		Duration:      time.Hour + 2*time.Minute + 3*time.Second + 456789012,
		PrevHash:      []byte("junk"),
		Hash:          []byte("junk"),
	}
	// So that a field added to Event must be added here, and stored.
	v := reflect.ValueOf(full)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("the test's event leaves %s zero: set it", v.Type().Field(i).Name)
		}
	}
	// Every text field at its longest, in two-byte characters; the
	// largest status and duration.
	longest := full
	lv := reflect.ValueOf(&longest).Elem()
	for i := range lv.NumField() {
		if f := lv.Field(i); f.Kind() == reflect.String {
			f.SetString(strings.Repeat("é", store.MaxAuditFieldLen/2))
		}
	}
	longest.Status = math.MaxInt32 + 1
	longest.Duration = math.MaxInt64

	want := chained([]audit.Event{full, longest}, 0, zeroHash())
	got := mustAppend(t, s, full, longest)
	if diff := cmp.Diff(want, got, opts); diff != "" {
		t.Errorf("AppendAudit returned (-want +got):\n%s", diff)
	}
	listed := mustListAudit(t, s, store.AuditFilter{})
	if diff := cmp.Diff(want, listed, opts); diff != "" {
		t.Errorf("ListAudit (-want +got):\n%s", diff)
	}
	if err := audit.Verify(listed, nil); err != nil {
		t.Errorf("Verify: %v", err)
	}
}

func testAppendAuditInvalid(t *testing.T, s store.Store) {
	ctx := t.Context()
	before := mustAppend(t, s, request(0, "get"))

	with := func(f func(e *audit.Event)) audit.Event {
		e := request(time.Minute, "get")
		f(&e)
		return e
	}
	invalid := []struct {
		name string
		e    audit.Event
	}{
		{"no time", with(func(e *audit.Event) { e.Time = time.Time{} })},
		{"time before the hash's range", with(func(e *audit.Event) { e.Time = time.Date(1677, time.January, 1, 0, 0, 0, 0, time.UTC) })},
		{"time after the hash's range", with(func(e *audit.Event) { e.Time = time.Date(2263, time.January, 1, 0, 0, 0, 0, time.UTC) })},
		{"no type", with(func(e *audit.Event) { e.Type = "" })},
		{"no decision", with(func(e *audit.Event) { e.Decision = "" })},
		{"text too long", with(func(e *audit.Event) { e.Reason = strings.Repeat("r", store.MaxAuditFieldLen+1) })},
		{"not UTF-8", with(func(e *audit.Event) { e.Path = "/api/\xff" })},
		{"control character", with(func(e *audit.Event) { e.Verb = "get\n" })},
		{"NUL", with(func(e *audit.Event) { e.Name = "a\x00b" })},
		{"negative status", with(func(e *audit.Event) { e.Status = -1 })},
		{"negative bytes in", with(func(e *audit.Event) { e.BytesIn = -1 })},
		{"negative bytes out", with(func(e *audit.Event) { e.BytesOut = -1 })},
		{"negative duration", with(func(e *audit.Event) { e.Duration = -time.Nanosecond })},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			// A valid event before the invalid one is not appended either.
			got, err := s.AppendAudit(t.Context(), []audit.Event{request(time.Minute, "list"), tt.e})
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("AppendAudit = %v, %v; want %v", seqs(got), err, store.ErrInvalid)
			}
			if diff := cmp.Diff(before, mustListAudit(t, s, store.AuditFilter{}), opts); diff != "" {
				t.Errorf("events after the refused append (-want +got):\n%s", diff)
			}
		})
	}

	// The refusals left no gap in the chain.
	want := append(before, chained([]audit.Event{request(2*time.Minute, "get")}, 1, before[0].Hash)...)
	mustAppend(t, s, request(2*time.Minute, "get"))
	listed, err := s.ListAudit(ctx, store.AuditFilter{})
	if err != nil {
		t.Fatalf("ListAudit: %v", err)
	}
	if diff := cmp.Diff(want, listed, opts); diff != "" {
		t.Errorf("events after the refusals and an append (-want +got):\n%s", diff)
	}
}

// testAppendAuditConcurrent appends from several goroutines at once, each
// several batches: they form one chain, each batch's events consecutive.
func testAppendAuditConcurrent(t *testing.T, s store.Store) {
	const (
		writers = 8
		batches = 10
		size    = 2 // 20 events per writer
	)
	returned := make([][]audit.Event, writers) // returned[i] is written by writer i only
	errs := race(writers, func(i int) error {
		for b := range batches {
			var events []audit.Event
			for n := range size {
				e := request(time.Duration(b*size+n)*time.Second, "get")
				e.Replica = fmt.Sprintf("hub-%d", i)
				events = append(events, e)
			}
			got, err := s.AppendAudit(t.Context(), events)
			if err != nil {
				return fmt.Errorf("batch %d: %w", b, err)
			}
			returned[i] = append(returned[i], got...)
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	listed := mustListAudit(t, s, store.AuditFilter{})
	if diff := cmp.Diff(span(1, writers*batches*size), seqs(listed)); diff != "" {
		t.Fatalf("sequence numbers (-want +got):\n%s", diff)
	}
	if err := audit.Verify(listed, nil); err != nil {
		t.Errorf("Verify: %v", err)
	}
	for i, got := range returned {
		for b := range batches {
			batch := got[b*size : (b+1)*size]
			if batch[size-1].Seq-batch[0].Seq != size-1 {
				t.Errorf("writer %d, batch %d: sequence numbers %v, want consecutive", i, b, seqs(batch))
			}
			if b > 0 && batch[0].Seq < got[b*size-1].Seq {
				t.Errorf("writer %d: batch %d at %d, before batch %d", i, b, batch[0].Seq, b-1)
			}
			want := listed[batch[0].Seq-1 : batch[0].Seq-1+size]
			if diff := cmp.Diff(want, batch, opts); diff != "" {
				t.Errorf("writer %d, batch %d: returned events differ from those listed (-listed +returned):\n%s", i, b, diff)
			}
		}
	}
}

func testListAudit(t *testing.T, s store.Store) {
	web, api := store.ClusterID("prod", "web"), store.ClusterID("prod", "api")
	mustAppend(t, s,
		auditEvent(0, audit.TypeRequest, web, pid(1), "get", audit.DecisionAllow),                     // 1
		auditEvent(time.Minute, audit.TypeRequest, web, pid(2), "delete", audit.DecisionDeny),         // 2
		auditEvent(2*time.Minute, audit.TypeSessionStart, api, pid(1), "create", audit.DecisionAllow), // 3
		auditEvent(3*time.Minute, audit.TypeSessionEnd, api, pid(1), "create", audit.DecisionAllow),   // 4
		auditEvent(4*time.Minute, audit.TypeSignIn, "", pid(2), "", audit.DecisionDeny),               // 5
		auditEvent(5*time.Minute, audit.TypeChange, "", pid(3), "create", audit.DecisionAllow),        // 6
		auditEvent(5*time.Minute, audit.TypeRequest, web, pid(1), "list", audit.DecisionError),        // 7
	)
	tests := []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"all", store.AuditFilter{}, span(1, 7)},
		{"after an event", store.AuditFilter{AfterSeq: 3}, span(4, 7)},
		{"after the last event", store.AuditFilter{AfterSeq: 7}, nil},
		{"after an event yet to come", store.AuditFilter{AfterSeq: 100}, nil},
		{"since: inclusive", store.AuditFilter{Since: at(time.Minute)}, span(2, 7)},
		{"since: events at the same time", store.AuditFilter{Since: at(5 * time.Minute)}, []int64{6, 7}},
		{"since: after the last", store.AuditFilter{Since: at(5*time.Minute + time.Microsecond)}, nil},
		{"until: exclusive", store.AuditFilter{Until: at(2 * time.Minute)}, []int64{1, 2}},
		{"until: the first event's time", store.AuditFilter{Until: at(0)}, nil},
		{"since and until", store.AuditFilter{Since: at(time.Minute), Until: at(3 * time.Minute)}, []int64{2, 3}},
		{"since and until in another zone", store.AuditFilter{Since: at(time.Minute).UTC(), Until: at(3 * time.Minute).In(time.FixedZone("UTC-5", -5*60*60))}, []int64{2, 3}},
		{"since after until", store.AuditFilter{Since: at(3 * time.Minute), Until: at(time.Minute)}, nil},
		{"cluster", store.AuditFilter{Cluster: web}, []int64{1, 2, 7}},
		{"cluster without events", store.AuditFilter{Cluster: store.ClusterID("prod", "db")}, nil},
		{"principal", store.AuditFilter{PrincipalID: pid(1)}, []int64{1, 3, 4, 7}},
		{"verb", store.AuditFilter{Verb: "create"}, []int64{3, 4, 6}},
		{"decision", store.AuditFilter{Decision: audit.DecisionDeny}, []int64{2, 5}},
		{"type", store.AuditFilter{Type: audit.TypeRequest}, []int64{1, 2, 7}},
		{"type: session end", store.AuditFilter{Type: audit.TypeSessionEnd}, []int64{4}},
		{"type: byte-wise equal only", store.AuditFilter{Type: "Request"}, nil},
		{"cluster and principal", store.AuditFilter{Cluster: web, PrincipalID: pid(1)}, []int64{1, 7}},
		{"cluster, decision and after", store.AuditFilter{Cluster: api, Decision: audit.DecisionAllow, AfterSeq: 3}, []int64{4}},
		{"principal in a time range", store.AuditFilter{PrincipalID: pid(1), Since: at(2 * time.Minute), Until: at(5 * time.Minute)}, []int64{3, 4}},
		{"every filter", store.AuditFilter{AfterSeq: 1, Since: at(0), Until: at(time.Hour), Cluster: web, PrincipalID: pid(1), Verb: "list", Decision: audit.DecisionError, Type: audit.TypeRequest}, []int64{7}},
		{"limit", store.AuditFilter{Cluster: web, Limit: 2}, []int64{1, 2}},
		{"limit after an event", store.AuditFilter{Cluster: web, AfterSeq: 1, Limit: 1}, []int64{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustListAudit(t, s, tt.f)
			if diff := cmp.Diff(tt.want, seqs(got)); diff != "" {
				t.Errorf("ListAudit(%+v) (-want +got):\n%s", tt.f, diff)
			}
		})
	}
}

// testListAuditLimit checks the default and largest limits, and paging
// with AfterSeq and Limit that verifies the chain in parts.
func testListAuditLimit(t *testing.T, s store.Store) {
	const n = store.DefaultAuditLimit + 1
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = request(time.Duration(i)*time.Millisecond, "get")
	}
	want := chained(events, 0, zeroHash())
	mustAppend(t, s, events...)

	tests := []struct {
		name string
		f    store.AuditFilter
		want []int64
	}{
		{"default", store.AuditFilter{}, span(1, store.DefaultAuditLimit)},
		{"one", store.AuditFilter{Limit: 1}, []int64{1}},
		{"largest", store.AuditFilter{Limit: store.MaxAuditLimit}, span(1, n)},
		{"default after an event", store.AuditFilter{AfterSeq: 1}, span(2, n)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, seqs(mustListAudit(t, s, tt.f))); diff != "" {
				t.Errorf("ListAudit(limit %d, after %d) (-want +got):\n%s", tt.f.Limit, tt.f.AfterSeq, diff)
			}
		})
	}

	// Page by page, each verified from the last hash of the one before.
	var (
		all   []audit.Event
		pages int
		after int64
		prev  []byte
	)
	for {
		page := mustListAudit(t, s, store.AuditFilter{AfterSeq: after, Limit: 300})
		if len(page) == 0 {
			break
		}
		if err := audit.Verify(page, prev); err != nil {
			t.Errorf("Verify of the page after event %d: %v", after, err)
		}
		all = append(all, page...)
		pages++
		after, prev = page[len(page)-1].Seq, page[len(page)-1].Hash
		if pages > n/300+1 {
			t.Fatalf("%d pages of 300 events, and more to come; want %d events", pages, n)
		}
	}
	if pages != 4 {
		t.Errorf("%d pages of 300 of %d events, want 4", pages, n)
	}
	if diff := cmp.Diff(want, all, opts); diff != "" {
		t.Errorf("events read page by page (-want +got):\n%s", diff)
	}
}

func testListAuditInvalid(t *testing.T, s store.Store) {
	mustAppend(t, s, request(0, "get"))
	tests := []struct {
		name string
		f    store.AuditFilter
	}{
		{"negative limit", store.AuditFilter{Limit: -1}},
		{"limit beyond the largest", store.AuditFilter{Limit: store.MaxAuditLimit + 1}},
		{"cluster with NUL", store.AuditFilter{Cluster: "/groups/prod/clusters/web\x00"}},
		{"principal not UTF-8", store.AuditFilter{PrincipalID: "\xff"}},
		{"verb too long", store.AuditFilter{Verb: strings.Repeat("v", store.MaxAuditFieldLen+1)}},
		{"decision with a control character", store.AuditFilter{Decision: "allow\n"}},
		{"type with NUL", store.AuditFilter{Type: "\x00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListAudit(t.Context(), tt.f)
			if !errors.Is(err, store.ErrInvalid) {
				t.Errorf("ListAudit = %v, %v; want %v", seqs(got), err, store.ErrInvalid)
			}
		})
	}
}

// testAuditNoAlias changes the slices that AppendAudit and ListAudit
// return: neither the store nor the other events change.
func testAuditNoAlias(t *testing.T, s store.Store) {
	appended := mustAppend(t, s, request(0, "get"), request(time.Second, "list"))
	prev := bytes.Clone(appended[1].PrevHash)
	appended[0].Hash[0] ^= 0xff
	if !bytes.Equal(appended[1].PrevHash, prev) {
		t.Errorf("changing the Hash of the first event returned changed the PrevHash of the second")
	}
	for _, e := range appended {
		e.PrevHash[0] ^= 0xff
		e.Hash[0] ^= 0xff
	}
	listed := mustListAudit(t, s, store.AuditFilter{})
	if err := audit.Verify(listed, nil); err != nil {
		t.Errorf("Verify after changing the appended events' hashes: %v", err)
	}
	prev = bytes.Clone(listed[1].PrevHash)
	listed[0].Hash[0] ^= 0xff
	if !bytes.Equal(listed[1].PrevHash, prev) {
		t.Errorf("changing the Hash of the first event listed changed the PrevHash of the second")
	}
	for _, e := range listed {
		e.PrevHash[0] ^= 0xff
		e.Hash[0] ^= 0xff
	}
	if err := audit.Verify(mustListAudit(t, s, store.AuditFilter{}), nil); err != nil {
		t.Errorf("Verify after changing the listed events' hashes: %v", err)
	}
}
