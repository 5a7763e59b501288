package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// auditLock is the key of the transaction-level advisory lock that
// serializes AppendAudit across replicas: each append reads the chain's
// last event and adds after it, one at a time. The key is "tether" in
// ASCII, then 3.
const auditLock int64 = 0x74_65_74_68_65_72_00_03

// auditColumns are the columns of audit_events that scanAudit reads and
// AppendAudit writes, in their order.
const auditColumns = `seq, event_time, type, request_id, replica,
	principal_id, principal_type, principal_name, source_addr,
	cluster_id, auth_mode, decision, reason,
	verb, api_group, resource, subresource, namespace, name, path,
	status, bytes_in, bytes_out, duration_ns, prev_hash, hash`

// insertAudit inserts one event, its values in the order of auditColumns.
const insertAudit = `INSERT INTO audit_events (` + auditColumns + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,
		$14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)`

// auditArgs returns e's values for auditColumns.
func auditArgs(e audit.Event) []any {
	return []any{e.Seq, dbTime(e.Time), e.Type, e.RequestID, e.Replica,
		e.PrincipalID, e.PrincipalType, e.PrincipalName, e.SourceAddr,
		e.Cluster, e.AuthMode, e.Decision, e.Reason,
		e.Verb, e.APIGroup, e.Resource, e.Subresource, e.Namespace, e.Name, e.Path,
		int64(e.Status), e.BytesIn, e.BytesOut, int64(e.Duration), e.PrevHash, e.Hash}
}

// scanAudit reads one row of auditColumns.
func scanAudit(row pgx.Row) (audit.Event, error) {
	var (
		e        audit.Event
		at       pgtype.Timestamptz
		status   int64
		duration int64
	)
	err := row.Scan(&e.Seq, &at, &e.Type, &e.RequestID, &e.Replica,
		&e.PrincipalID, &e.PrincipalType, &e.PrincipalName, &e.SourceAddr,
		&e.Cluster, &e.AuthMode, &e.Decision, &e.Reason,
		&e.Verb, &e.APIGroup, &e.Resource, &e.Subresource, &e.Namespace, &e.Name, &e.Path,
		&status, &e.BytesIn, &e.BytesOut, &duration, &e.PrevHash, &e.Hash)
	if err != nil {
		return audit.Event{}, err
	}
	e.Time = goTime(at)
	e.Status = int(status)
	e.Duration = time.Duration(duration)
	return e, nil
}

// AppendAudit implements store.Store. Appends take auditLock before they
// read the chain's last event, one at a time across replicas; at READ
// COMMITTED that read sees every append committed before, since a
// transaction's commit is visible before its locks are released. The
// events of one call go in one batch.
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, auditLock); err != nil {
			return err
		}
		seq, prev := int64(0), make([]byte, audit.HashSize)
		err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1`).Scan(&seq, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("read the chain's last event: %w", err)
		}
		linked = store.LinkAudit(events, seq, prev)
		var b pgx.Batch
		for _, e := range linked {
			b.Queue(insertAudit, auditArgs(e)...)
		}
		return tx.SendBatch(ctx, &b).Close()
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
	var (
		where []string
		args  []any
	)
	cond := func(c string, v any) {
		args = append(args, v)
		where = append(where, c+" $"+strconv.Itoa(len(args)))
	}
	cond(`seq >`, f.AfterSeq)
	if !f.Since.IsZero() {
		cond(`event_time >=`, dbTime(f.Since))
	}
	if !f.Until.IsZero() {
		cond(`event_time <`, dbTime(f.Until))
	}
	for _, c := range []struct{ column, value string }{
		{"cluster_id", f.Cluster}, {"principal_id", f.PrincipalID}, {"verb", f.Verb},
		{"decision", f.Decision}, {"type", f.Type},
	} {
		if c.value != "" {
			cond(c.column+` =`, c.value)
		}
	}
	args = append(args, limit)
	query := `SELECT ` + auditColumns + ` FROM audit_events
		WHERE ` + strings.Join(where, ` AND `) + `
		ORDER BY seq LIMIT $` + strconv.Itoa(len(args))
	var events []audit.Event
	err = s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		events, err = collect(rows, scanAudit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	return events, nil
}
