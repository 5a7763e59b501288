package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"tether.dev/tether/internal/store"
)

// clusterColumns are the columns scanCluster reads, in its order.
const clusterColumns = `id, group_name, name, location, mode, created_at,
	agent_public_key, enrolled_at, agent_version, kubernetes_version, last_seen_at,
	status_agent_version, status_kubernetes_version, status_node_count, status_last_error, status_reported_at,
	tunnel_replica, tunnel_connected_at`

// scanCluster reads one row of clusterColumns.
func scanCluster(row interface{ Scan(...any) error }) (store.Cluster, error) {
	var (
		c                                         store.Cluster
		mode                                      string
		created, enrolled, seen, reported, tunnel sql.NullInt64
	)
	st := &c.Agent.Status
	err := row.Scan(&c.ID, &c.Group, &c.Name, &c.Location, &mode, &created,
		&c.Agent.PublicKey, &enrolled, &c.Agent.Version, &c.Agent.KubernetesVersion, &seen,
		&st.AgentVersion, &st.KubernetesVersion, &st.NodeCount, &st.LastError, &reported,
		&c.Tunnel.Replica, &tunnel)
	if err != nil {
		return store.Cluster{}, err
	}
	c.Mode = store.ClusterMode(mode)
	c.CreatedAt = goTime(created)
	c.Agent.EnrolledAt = goTime(enrolled)
	c.Agent.LastSeenAt = goTime(seen)
	st.ReportedAt = goTime(reported)
	c.Tunnel.ConnectedAt = goTime(tunnel)
	return c, nil
}

// CreateCluster implements store.Store.
func (s *Store) CreateCluster(ctx context.Context, c store.Cluster) (store.Cluster, error) {
	if err := c.Validate(); err != nil {
		return store.Cluster{}, fmt.Errorf("create cluster: %w", err)
	}
	mode, _ := store.ParseClusterMode(string(c.Mode)) // validated above
	id := store.ClusterID(c.Group, c.Name)
	var created store.Cluster
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		created, err = scanCluster(tx.QueryRowContext(ctx, `
			INSERT INTO clusters (id, group_name, name, location, mode, created_at)
			VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING
			RETURNING `+clusterColumns,
			id, c.Group, c.Name, c.Location, string(mode), dbTime(c.CreatedAt)))
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrConflict
		}
		return err
	})
	if err != nil {
		return store.Cluster{}, fmt.Errorf("create cluster %s: %w", id, err)
	}
	return created, nil
}

// GetCluster implements store.Store.
func (s *Store) GetCluster(ctx context.Context, id string) (store.Cluster, error) {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return store.Cluster{}, fmt.Errorf("get cluster: %w", err)
	}
	c, err := scanCluster(s.db.QueryRowContext(ctx,
		`SELECT `+clusterColumns+` FROM clusters WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return store.Cluster{}, fmt.Errorf("get cluster %s: %w", id, err)
	}
	return c, nil
}

// ListClusters implements store.Store. The BINARY collation of the
// (group_name, name) index orders byte-wise.
func (s *Store) ListClusters(ctx context.Context, f store.ClusterFilter) ([]store.Cluster, error) {
	query := `SELECT ` + clusterColumns + ` FROM clusters`
	var args []any
	if f.Group != "" {
		if err := store.ValidateName(f.Group); err != nil {
			return nil, fmt.Errorf("list clusters: group: %w", err)
		}
		query += ` WHERE group_name = ?`
		args = append(args, f.Group)
	}
	query += ` ORDER BY group_name, name`

	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	defer rows.Close()
	var cs []store.Cluster
	for rows.Next() {
		c, err := scanCluster(rows)
		if err != nil {
			return nil, fmt.Errorf("list clusters: %w", err)
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list clusters: %w", err)
	}
	return cs, nil
}

// DeleteCluster implements store.Store. The foreign key's ON DELETE CASCADE
// removes the cluster's join tokens.
func (s *Store) DeleteCluster(ctx context.Context, id string) error {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return fmt.Errorf("delete cluster: %w", err)
	}
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		if err := execOne(ctx, tx, `DELETE FROM clusters WHERE id = ?`, id); err != nil {
			return nil, err
		}
		// Its role assignments go with it (at the cluster and its
		// namespaces), so a cluster re-created under the same name starts
		// with none. '0' follows '/': [id+"/", id+"0") is what begins id+"/".
		_, err := tx.ExecContext(ctx, `DELETE FROM role_assignments WHERE scope = ? OR (scope >= ? AND scope < ?)`, id, id+"/", id+"0")
		return []string{id}, err
	})
	if err != nil {
		return fmt.Errorf("delete cluster %s: %w", id, err)
	}
	return nil
}

// RecordHeartbeat implements store.Store.
func (s *Store) RecordHeartbeat(ctx context.Context, id string, hb store.Heartbeat) error {
	return s.updateCluster(ctx, "record heartbeat", id, hb, `
		UPDATE clusters SET agent_version = ?, kubernetes_version = ?, last_seen_at = ?
		WHERE id = ?`,
		hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At))
}

// RecordHeartbeats implements store.Store: one transaction, one UPDATE
// of each cluster's row.
func (s *Store) RecordHeartbeats(ctx context.Context, hbs map[string]store.Heartbeat) error {
	if err := store.ValidateHeartbeats(hbs); err != nil {
		return err
	}
	if len(hbs) == 0 {
		return nil
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `
			UPDATE clusters SET agent_version = ?, kubernetes_version = ?, last_seen_at = ?
			WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, hb := range hbs {
			// No row touched: deleted meanwhile, skipped.
			if _, err := stmt.ExecContext(ctx, hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At), id); err != nil {
				return fmt.Errorf("cluster %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record heartbeats of %d clusters: %w", len(hbs), err)
	}
	return nil
}

// ListAgentKeys implements store.Store: one query, the IDs passed as one
// JSON array (any number of them, where SQLite bounds the parameters of a
// statement).
func (s *Store) ListAgentKeys(ctx context.Context, ids []string) (map[string][]byte, error) {
	keys, err := store.AgentKeysFor(ids)
	if err != nil || len(ids) == 0 {
		return keys, err
	}
	list, err := json.Marshal(ids)
	if err != nil {
		return nil, fmt.Errorf("list agent keys: %w", err)
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, agent_public_key FROM clusters
		WHERE id IN (SELECT value FROM json_each(?))`, string(list))
	if err != nil {
		return nil, fmt.Errorf("list agent keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  string
			key []byte
		)
		if err := rows.Scan(&id, &key); err != nil {
			return nil, fmt.Errorf("list agent keys: %w", err)
		}
		keys[id] = key
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list agent keys: %w", err)
	}
	return keys, nil
}

// RecordAgentStatus implements store.Store.
func (s *Store) RecordAgentStatus(ctx context.Context, id string, st store.AgentStatus) error {
	return s.updateCluster(ctx, "record agent status", id, st, `
		UPDATE clusters SET status_agent_version = ?, status_kubernetes_version = ?,
			status_node_count = ?, status_last_error = ?, status_reported_at = ?
		WHERE id = ?`,
		st.AgentVersion, st.KubernetesVersion, st.NodeCount, st.LastError, dbTime(st.ReportedAt))
}

// SetTunnel implements store.Store. Every call is a change that the
// watches see, even one that records the holder already recorded.
func (s *Store) SetTunnel(ctx context.Context, id string, t store.Tunnel) error {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return fmt.Errorf("set tunnel: %w", err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("set tunnel of cluster %s: %w", id, err)
	}
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		err := execOne(ctx, tx, `
			UPDATE clusters SET tunnel_replica = ?, tunnel_connected_at = ?
			WHERE id = ?`,
			t.Replica, dbTime(t.ConnectedAt), id)
		return []string{id}, err
	})
	if err != nil {
		return fmt.Errorf("set tunnel of cluster %s: %w", id, err)
	}
	return nil
}

// RecordConnection implements store.Store: one UPDATE, a change that the
// watches see as SetTunnel's is.
func (s *Store) RecordConnection(ctx context.Context, id string, t store.Tunnel, hb store.Heartbeat) error {
	if err := store.ValidateConnection(id, t, hb); err != nil {
		return err
	}
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		err := execOne(ctx, tx, `
			UPDATE clusters SET tunnel_replica = ?, tunnel_connected_at = ?,
				agent_version = ?, kubernetes_version = ?, last_seen_at = ?
			WHERE id = ?`,
			t.Replica, dbTime(t.ConnectedAt), hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At), id)
		return []string{id}, err
	})
	if err != nil {
		return fmt.Errorf("record connection of cluster %s: %w", id, err)
	}
	return nil
}

// updateCluster validates the cluster ID and v, then runs query, an UPDATE
// whose last parameter is the ID and which must touch the cluster's row
// (else store.ErrNotFound). what names the operation in errors.
func (s *Store) updateCluster(ctx context.Context, what, id string, v interface{ Validate() error }, query string, args ...any) error {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%s of cluster %s: %w", what, id, err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		return execOne(ctx, tx, query, append(args, id)...)
	})
	if err != nil {
		return fmt.Errorf("%s of cluster %s: %w", what, id, err)
	}
	return nil
}

// ClearTunnel implements store.Store. Both sides of the comparison are
// whole microseconds, so a caller may pass the time it gave SetTunnel.
func (s *Store) ClearTunnel(ctx context.Context, id string, t store.Tunnel) (bool, error) {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return false, fmt.Errorf("clear tunnel: %w", err)
	}
	if err := t.Validate(); err != nil {
		return false, fmt.Errorf("clear tunnel of cluster %s: %w", id, err)
	}
	var cleared bool
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		err := execOne(ctx, tx, `
			UPDATE clusters SET tunnel_replica = '', tunnel_connected_at = NULL
			WHERE id = ? AND tunnel_replica = ? AND tunnel_connected_at = ?`,
			id, t.Replica, dbTime(t.ConnectedAt))
		if !errors.Is(err, store.ErrNotFound) {
			cleared = err == nil
			return []string{id}, err
		}
		// Nothing matched: is the holder another, or the cluster gone?
		return nil, clusterExists(ctx, tx, id)
	})
	if err != nil {
		return false, fmt.Errorf("clear tunnel of cluster %s: %w", id, err)
	}
	return cleared, nil
}

// execOne runs a statement that must touch a row, else it returns
// store.ErrNotFound.
func execOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	res, err := tx.ExecContext(ctx, query, args...)
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return store.ErrNotFound
	}
	return nil
}

// insertOne runs an INSERT ... ON CONFLICT DO NOTHING that must insert a
// row, else it returns store.ErrConflict.
func insertOne(ctx context.Context, tx *sql.Tx, query string, args ...any) error {
	err := execOne(ctx, tx, query, args...)
	if errors.Is(err, store.ErrNotFound) {
		return store.ErrConflict
	}
	return err
}

// clusterExists returns store.ErrNotFound unless the cluster exists.
func clusterExists(ctx context.Context, tx *sql.Tx, id string) error {
	var exists bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM clusters WHERE id = ?)`, id).Scan(&exists)
	if err != nil {
		return err
	}
	if !exists {
		return store.ErrNotFound
	}
	return nil
}
