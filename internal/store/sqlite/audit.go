package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// auditColumns are the columns of audit_events that scanAudit reads and
// AppendAudit writes, in their order.
const auditColumns = `seq, event_time, type, request_id, replica,
	principal_id, principal_type, principal_name, source_addr,
	cluster_id, auth_mode, decision, reason,
	verb, api_group, resource, subresource, namespace, name, path,
	status, bytes_in, bytes_out, duration_ns, prev_hash, hash`

// auditArgs returns e's values for auditColumns.
func auditArgs(e audit.Event) []any {
	return []any{e.Seq, dbTime(e.Time), e.Type, e.RequestID, e.Replica,
		e.PrincipalID, e.PrincipalType, e.PrincipalName, e.SourceAddr,
		e.Cluster, e.AuthMode, e.Decision, e.Reason,
		e.Verb, e.APIGroup, e.Resource, e.Subresource, e.Namespace, e.Name, e.Path,
		e.Status, e.BytesIn, e.BytesOut, int64(e.Duration), e.PrevHash, e.Hash}
}

// scanAudit reads one row of auditColumns.
func scanAudit(row interface{ Scan(...any) error }) (audit.Event, error) {
	var (
		e        audit.Event
		at       sql.NullInt64
		duration int64
	)
	err := row.Scan(&e.Seq, &at, &e.Type, &e.RequestID, &e.Replica,
		&e.PrincipalID, &e.PrincipalType, &e.PrincipalName, &e.SourceAddr,
		&e.Cluster, &e.AuthMode, &e.Decision, &e.Reason,
		&e.Verb, &e.APIGroup, &e.Resource, &e.Subresource, &e.Namespace, &e.Name, &e.Path,
		&e.Status, &e.BytesIn, &e.BytesOut, &duration, &e.PrevHash, &e.Hash)
	if err != nil {
		return audit.Event{}, err
	}
	e.Time = goTime(at)
	e.Duration = time.Duration(duration)
	return e, nil
}

// AppendAudit implements store.Store. The write transaction (BEGIN
// IMMEDIATE, and one at a time within the Store) holds SQLite's write lock
// before it reads the chain's last event, so appends through any handle on
// the file extend the chain one after another.
func (s *Store) AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error) {
	for i, e := range events {
		if err := store.ValidateAuditEvent(e); err != nil {
			return nil, fmt.Errorf("append audit events: event %d: %w", i, err)
		}
	}
	if len(events) == 0 {
		return nil, nil
	}
	var linked []audit.Event
	err := s.write(ctx, func(tx *sql.Tx) error {
		seq, prev := int64(0), make([]byte, audit.HashSize)
		err := tx.QueryRowContext(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("read the chain's last event: %w", err)
		}
		linked = store.LinkAudit(events, seq, prev)
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO audit_events (`+auditColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range linked {
			if _, err := stmt.ExecContext(ctx, auditArgs(e)...); err != nil {
				return fmt.Errorf("insert event %d: %w", e.Seq, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("append %d audit events: %w", len(events), err)
	}
	return linked, nil
}

// ListAudit implements store.Store.
func (s *Store) ListAudit(ctx context.Context, f store.AuditFilter) ([]audit.Event, error) {
	limit, err := store.AuditLimit(f)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	where, args := []string{`seq > ?`}, []any{f.AfterSeq}
	if !f.Since.IsZero() {
		where, args = append(where, `event_time >= ?`), append(args, dbTime(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, `event_time < ?`), append(args, dbTime(f.Until))
	}
	for _, c := range []struct{ column, value string }{
		{"cluster_id", f.Cluster}, {"principal_id", f.PrincipalID}, {"verb", f.Verb},
		{"decision", f.Decision}, {"type", f.Type},
	} {
		if c.value != "" {
			where, args = append(where, c.column+` = ?`), append(args, c.value)
		}
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT `+auditColumns+` FROM audit_events
		WHERE `+strings.Join(where, ` AND `)+`
		ORDER BY seq LIMIT ?`,
		append(args, limit)...)
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	defer rows.Close()
	var events []audit.Event
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("list audit events: %w", err)
		}
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return events, nil
}
