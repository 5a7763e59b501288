package store

import (
	"bytes"
	"cmp"
	"fmt"
	"time"

	"tether.dev/tether/internal/audit"
)

// What both backends do the same around the audit chain.

// LinkAudit returns events as they are stored after the event seq whose hash is
// prev: numbered from seq+1, each time in UTC truncated to the microsecond
// (before it is hashed, so that the hash covers the time read back), and
// each chained to the one before. The events' slices are new, none shared.
func LinkAudit(events []audit.Event, seq int64, prev []byte) []audit.Event {
	linked := make([]audit.Event, len(events))
	for i, e := range events {
		e.Seq = seq + int64(i) + 1
		e.Time = e.Time.Truncate(time.Microsecond).UTC()
		e.PrevHash = bytes.Clone(prev)
		e.Hash = e.ComputeHash(prev)
		linked[i] = e
		prev = e.Hash
	}
	return linked
}

// AuditLimit checks f for ListAudit and returns the most events to return:
// the limit must be 0 (DefaultAuditLimit) to MaxAuditLimit, and
// each equality filter a value that an event's field may hold, as
// ValidateAuditEvent checks them.
func AuditLimit(f AuditFilter) (int, error) {
	if f.Limit < 0 || f.Limit > MaxAuditLimit {
		return 0, fmt.Errorf("limit %d: want 0 (for %d) to %d: %w", f.Limit, DefaultAuditLimit, MaxAuditLimit, ErrInvalid)
	}
	// The time, and the type and decision when unset, only satisfy the
	// event's other checks.
	e := audit.Event{Time: time.Unix(0, 0), Type: cmp.Or(f.Type, "-"), Decision: cmp.Or(f.Decision, "-"),
		Cluster: f.Cluster, PrincipalID: f.PrincipalID, Verb: f.Verb}
	if err := ValidateAuditEvent(e); err != nil {
		return 0, fmt.Errorf("filter: %w", err)
	}
	return cmp.Or(f.Limit, DefaultAuditLimit), nil
}
