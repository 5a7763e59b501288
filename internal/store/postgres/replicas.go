package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

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
	err := s.write(ctx, func(tx pgx.Tx) error {
		// FOR UPDATE holds the record from the read to the replacement, so
		// an expiry in between cannot go unreported.
		var expires pgtype.Timestamptz
		err := tx.QueryRow(ctx, `SELECT expires_at FROM replicas WHERE name = $1 FOR UPDATE`, r.Name).Scan(&expires)
		switch {
		case err == nil:
			renewed = goTime(expires).After(now)
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO replicas (name, url, expires_at) VALUES ($1, $2, $3)
			ON CONFLICT (name) DO UPDATE SET url = excluded.url, expires_at = excluded.expires_at`,
			r.Name, r.URL, dbTime(r.ExpiresAt))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("renew replica %s: %w", r.Name, err)
	}
	return renewed, nil
}

// ListReplicas implements store.Store. The "C" collation of the primary
// key orders byte-wise.
func (s *Store) ListReplicas(ctx context.Context, now time.Time) ([]store.Replica, error) {
	if err := requireNow(now); err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	var rs []store.Replica
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, `
			SELECT name, url, expires_at FROM replicas
			WHERE expires_at > $1
			ORDER BY name`, dbTime(now))
		if err != nil {
			return err
		}
		rs, err = collect(rows, func(row pgx.Row) (store.Replica, error) {
			var (
				r       store.Replica
				expires pgtype.Timestamptz
			)
			err := row.Scan(&r.Name, &r.URL, &expires)
			r.ExpiresAt = goTime(expires)
			return r, err
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list replicas: %w", err)
	}
	return rs, nil
}

// RemoveReplica implements store.Store. The trigger on clusters tells the
// watches of each tunnel cleared.
func (s *Store) RemoveReplica(ctx context.Context, name string) ([]string, error) {
	if err := validateReplicaName(name); err != nil {
		return nil, fmt.Errorf("remove replica: %w", err)
	}
	var cleared []string
	err := s.read(ctx, func(q querier) error {
		// One statement is one change.
		var err error
		cleared, err = queryStrings(ctx, q, `
			WITH removed AS (DELETE FROM replicas WHERE name = $1),
			cleared AS (
				UPDATE clusters SET tunnel_replica = '', tunnel_connected_at = NULL
				WHERE tunnel_replica = $1 AND tunnel_replica <> ''
				RETURNING id
			)
			SELECT id FROM cleared ORDER BY id`,
			name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("remove replica %s: %w", name, err)
	}
	return cleared, nil
}

// ExpireReplicas implements store.Store. The trigger on clusters tells the
// watches of each tunnel cleared.
func (s *Store) ExpireReplicas(ctx context.Context, now time.Time) ([]string, error) {
	if err := requireNow(now); err != nil {
		return nil, fmt.Errorf("expire replicas: %w", err)
	}
	var removed []string
	err := s.read(ctx, func(q querier) error {
		// One statement is one change: the tunnels cleared are those of the
		// records deleted.
		var err error
		removed, err = queryStrings(ctx, q, `
			WITH removed AS (
				DELETE FROM replicas WHERE expires_at <= $1
				RETURNING name
			),
			cleared AS (
				UPDATE clusters SET tunnel_replica = '', tunnel_connected_at = NULL
				WHERE tunnel_replica IN (SELECT name FROM removed) AND tunnel_replica <> ''
			)
			SELECT name FROM removed ORDER BY name`,
			dbTime(now))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("expire replicas: %w", err)
	}
	return removed, nil
}

// ListTunnels implements store.Store.
func (s *Store) ListTunnels(ctx context.Context) (map[string]store.Tunnel, error) {
	var tunnels map[string]store.Tunnel
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, `
			SELECT id, tunnel_replica, tunnel_connected_at FROM clusters
			WHERE tunnel_replica <> ''`)
		if err != nil {
			return err
		}
		var (
			id        string
			t         store.Tunnel
			connected pgtype.Timestamptz
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &t.Replica, &connected}, func() error {
			if tunnels == nil {
				tunnels = make(map[string]store.Tunnel)
			}
			tunnels[id] = store.Tunnel{Replica: t.Replica, ConnectedAt: goTime(connected)}
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list tunnels: %w", err)
	}
	return tunnels, nil
}

// validateReplicaName checks a replica name as Tunnel.Replica takes it.
func validateReplicaName(name string) error {
	// Tunnel.Validate checks the name as Replica.Validate does; the time
	// only satisfies its other check.
	return store.Tunnel{Replica: name, ConnectedAt: time.Unix(0, 0)}.Validate()
}
