package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// Tests that need more than the Store interface: the backend gives them
// raw access to its database, or several Stores on one database.

// AuditEvents returns n valid audit events, a second apart.
func AuditEvents(n int) []audit.Event {
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)
	events := make([]audit.Event, n)
	for i := range events {
		events[i] = audit.Event{
			Time:     t0.Add(time.Duration(i) * time.Second),
			Type:     audit.TypeRequest,
			Decision: audit.DecisionAllow,
			Verb:     "get",
			Resource: "pods",
			Status:   200,
			BytesOut: 1234,
		}
	}
	return events
}

// Tamper is a change to the audit trail made behind the store's back, in
// the backend's SQL, and what Verify's error must then say.
type Tamper struct {
	Name string
	SQL  []string // statements run on the database, in order, on one connection
	Want []string // fragments of Verify's error
}

// AuditTamperCases are the changes RunAuditTamper makes, in SQL both
// backends run, but for two expressions: plusMicrosecond is event_time a
// microsecond later, zeroHash a 32-byte hash of zeros.
func AuditTamperCases(plusMicrosecond, zeroHash string) []Tamper {
	return []Tamper{
		{
			Name: "edit a field",
			SQL:  []string{`UPDATE audit_events SET verb = 'delete' WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit a count",
			SQL:  []string{`UPDATE audit_events SET bytes_out = 0 WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit the time by a microsecond",
			SQL:  []string{`UPDATE audit_events SET event_time = ` + plusMicrosecond + ` WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "edit the hash",
			SQL:  []string{`UPDATE audit_events SET hash = ` + zeroHash + ` WHERE seq = 3`},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "delete an event",
			SQL:  []string{`DELETE FROM audit_events WHERE seq = 3`},
			Want: []string{"event 4 follows event 2: 1 event(s) missing"},
		},
		{
			Name: "delete the first event",
			SQL:  []string{`DELETE FROM audit_events WHERE seq = 1`},
			Want: []string{"at event 2:", "does not follow the event before it"},
		},
		{
			Name: "delete an event and renumber the later ones",
			SQL: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
			},
			Want: []string{"at event 3:", "does not follow the event before it"},
		},
		{
			Name: "delete an event, renumber, and link the next to the one before",
			SQL: []string{
				`DELETE FROM audit_events WHERE seq = 3`,
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq > 3`,
				`UPDATE audit_events SET seq = seq - 1001 WHERE seq > 1000`,
				`UPDATE audit_events SET prev_hash = (SELECT hash FROM audit_events WHERE seq = 2) WHERE seq = 3`,
			},
			Want: []string{"at event 3:", "(edited)"},
		},
		{
			Name: "swap two events",
			SQL: []string{
				`UPDATE audit_events SET seq = seq + 1000 WHERE seq IN (2, 3)`,
				`UPDATE audit_events SET seq = 1005 - seq WHERE seq > 1000`,
			},
			Want: []string{"at event 2:", "does not follow the event before it"},
		},
		{
			Name: "append a copy linked to the last event",
			SQL: []string{
				`CREATE TEMP TABLE forged AS SELECT * FROM audit_events WHERE seq = 2`,
				`UPDATE forged SET seq = 6, prev_hash = (SELECT hash FROM audit_events WHERE seq = 5)`,
				`INSERT INTO audit_events SELECT * FROM forged`,
			},
			Want: []string{"at event 6:", "(edited)"},
		},
	}
}

// RunAuditTamper appends five events to a new store, runs each case's SQL
// on its database, and checks that audit.Verify over what ListAudit then
// returns reports the break as the case says. open returns a new, empty
// store and a func that runs one statement on its database (on one
// connection, for temporary tables).
func RunAuditTamper(t *testing.T, cases []Tamper, open func(t *testing.T) (store.Store, func(ctx context.Context, stmt string) error)) {
	for _, tt := range cases {
		t.Run(tt.Name, func(t *testing.T) {
			ctx := t.Context()
			s, exec := open(t)
			if _, err := s.AppendAudit(ctx, AuditEvents(5)); err != nil {
				t.Fatalf("AppendAudit: %v", err)
			}
			events, err := s.ListAudit(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatalf("ListAudit: %v", err)
			}
			if err := audit.Verify(events, nil); err != nil {
				t.Fatalf("Verify before tampering: %v", err)
			}
			for _, stmt := range tt.SQL {
				if err := exec(ctx, stmt); err != nil {
					t.Fatalf("%s: %v", stmt, err)
				}
			}
			events, err = s.ListAudit(ctx, store.AuditFilter{})
			if err != nil {
				t.Fatalf("ListAudit after tampering: %v", err)
			}
			err = audit.Verify(events, nil)
			if !errors.Is(err, audit.ErrBroken) {
				t.Fatalf("Verify after tampering = %v, want %v", err, audit.ErrBroken)
			}
			for _, w := range tt.Want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Verify after tampering = %q, want it to say %q", err, w)
				}
			}
		})
	}
}

// RunConcurrentAppends appends from writers goroutines, spread over
// handles (several Stores on one database, as replicas are), appends
// single events each, all at once, and checks that every handle then reads
// one unbroken chain of all of them.
func RunConcurrentAppends(t *testing.T, handles []store.Store, writers, appends int) {
	ctx := t.Context()
	errs := make([]error, writers) // errs[i] is written by writer i only
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			s := handles[i%len(handles)]
			<-start
			for n := range appends {
				if _, err := s.AppendAudit(ctx, AuditEvents(1)); err != nil {
					errs[i] = fmt.Errorf("append %d: %w", n, err)
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	for h, s := range handles {
		events, err := s.ListAudit(ctx, store.AuditFilter{})
		if err != nil {
			t.Fatalf("ListAudit: %v", err)
		}
		if len(events) != writers*appends {
			t.Errorf("handle %d: %d events, want %d", h, len(events), writers*appends)
		}
		if err := audit.Verify(events, nil); err != nil {
			t.Errorf("handle %d: Verify: %v", h, err)
		}
	}
}
