package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"tether.dev/tether/internal/store"
)

// RenewReplica implements store.Store.
func (s *Store) RenewReplica(ctx context.Context, r store.Replica, now time.Time) (bool, error) {
	if err := r.Validate(); err != nil {
		return false, fmt.Errorf("renew replica: %w", err)
	}
	if err := requireNow(now); err != nil {
		return false, fmt.Errorf("renew replica %s: %w", r.Name, err)
	}
	var renewed bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var expires int64
		err := tx.QueryRowContext(ctx, `SELECT expires_at FROM replicas WHERE name = ?`, r.Name).Scan(&expires)
		switch {
		case err == nil:
			renewed = expires > now.UnixMicro()
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, `
			INSERT INTO replicas (name, url, expires_at) VALUES (?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at`,
			r.Name, r.URL, dbTime(r.ExpiresAt))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("renew replica %s: %w", r.Name, err)
	}
	return renewed, nil
}

// ListReplicas implements store.Store. The BINARY collation of the primary
// key orders byte-wise.
func (s *Store) ListReplicas(ctx context.Context, now time.Time) ([]store.Replica, error) {
	if err := requireNow(now); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT name, url, expires_at FROM replicas
		WHERE expires_at > ?
		ORDER BY name`, dbTime(now))
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	defer rows.Close()
	var rs []store.Replica
	for rows.Next() {
		var (
			r       store.Replica
			expires sql.NullInt64
		)
		if err := rows.Scan(&r.Name, &r.URL, &expires); err != nil {
			return nil, fmt.Errorf("list replicas: %w", err)
		}
		r.ExpiresAt = goTime(expires)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return rs, nil
}

// RemoveReplica implements store.Store.
func (s *Store) RemoveReplica(ctx context.Context, name string) ([]string, error) {
	if err := validateReplicaName(name); err != nil {
		return nil, fmt.Errorf("remove replica: %w", err)
	}
	var cleared []string
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		if _, err := tx.ExecContext(ctx, `DELETE FROM replicas WHERE name = ?`, name); err != nil {
			return nil, err
		}
		var err error
		cleared, err = clearTunnels(ctx, tx, `tunnel_replica = ?`, name)
		return cleared, err
	})
	if err != nil {
		return nil, fmt.Errorf("remove replica %s: %w", name, err)
	}
	return cleared, nil
}

// ExpireReplicas implements store.Store.
func (s *Store) ExpireReplicas(ctx context.Context, now time.Time) ([]string, error) {
	if err := requireNow(now); err != nil {
		return nil, fmt.Errorf("expire replicas: %w", err)
	}
	at := dbTime(now)
	var removed []string
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		cleared, err := clearTunnels(ctx, tx,
			`tunnel_replica IN (SELECT name FROM replicas WHERE expires_at <= ?)`, at)
		if err != nil {
			return nil, err
		}
		removed, err = queryStrings(ctx, tx, `DELETE FROM replicas WHERE expires_at <= ? RETURNING name`, at)
		return cleared, err
	})
	if err != nil {
		return nil, fmt.Errorf("expire replicas: %w", err)
	}
	return removed, nil
}

// ListTunnels implements store.Store.
func (s *Store) ListTunnels(ctx context.Context) (map[string]store.Tunnel, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, tunnel_replica, tunnel_connected_at FROM clusters
		WHERE tunnel_replica <> ''`)
	if err != nil {
		return nil, fmt.Errorf("list tunnels: %w", err)
	}
	defer rows.Close()
	var tunnels map[string]store.Tunnel
	for rows.Next() {
		var (
			id        string
			t         store.Tunnel
			connected sql.NullInt64
		)
		if err := rows.Scan(&id, &t.Replica, &connected); err != nil {
			return nil, fmt.Errorf("list tunnels: %w", err)
		}
		t.ConnectedAt = goTime(connected)
		if tunnels == nil {
			tunnels = make(map[string]store.Tunnel)
		}
		tunnels[id] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list tunnels: %w", err)
	}
	return tunnels, nil
}

// clearTunnels clears the tunnel holder of the clusters that match where, a
// condition on the clusters table with args, and returns their IDs,
// sorted.
func clearTunnels(ctx context.Context, tx *sql.Tx, where string, args ...any) ([]string, error) {
	return queryStrings(ctx, tx, `
		UPDATE clusters SET tunnel_replica = '', tunnel_connected_at = NULL
		WHERE tunnel_replica <> '' AND `+where+`
		RETURNING id`, args...)
}

// queryStrings runs a query, or a statement with RETURNING, whose rows are
// one string each, and returns them sorted byte-wise (RETURNING has no
// ORDER BY).
func queryStrings(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]string, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ss []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		ss = append(ss, s)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(ss)
	return ss, nil
}

// validateReplicaName checks a replica name as Tunnel.Replica takes it.
func validateReplicaName(name string) error {
	// Tunnel.Validate checks the name as Replica.Validate does; the time
	// only satisfies its other check.
	return store.Tunnel{Replica: name, ConnectedAt: time.Unix(0, 0)}.Validate()
}

// requireNow checks the caller's clock reading that a method compares
// expiries with.
func requireNow(now time.Time) error {
	if now.IsZero() {
		return fmt.Errorf("time is required: %w", store.ErrInvalid)
	}
	return nil
}
