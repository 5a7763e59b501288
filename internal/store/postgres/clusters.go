package postgres

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"tether.dev/tether/internal/store"
)

// clusterColumns are the columns scanCluster reads, in its order.
const clusterColumns = `id, group_name, name, location, mode, created_at,
	agent_public_key, enrolled_at, agent_version, kubernetes_version, last_seen_at,
	status_agent_version, status_kubernetes_version, status_node_count, status_last_error, status_reported_at,
	tunnel_replica, tunnel_connected_at`

// scanCluster reads one row of clusterColumns.
func scanCluster(row pgx.Row) (store.Cluster, error) {
	var (
		c                                         store.Cluster
		mode                                      string
		created, enrolled, seen, reported, tunnel pgtype.Timestamptz
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
	err := s.read(ctx, func(q querier) error {
		var err error
		created, err = scanCluster(q.QueryRow(ctx, `
			INSERT INTO clusters (id, group_name, name, location, mode, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT DO NOTHING
			RETURNING `+clusterColumns,
			id, c.Group, c.Name, c.Location, string(mode), dbTime(c.CreatedAt)))
		if errors.Is(err, pgx.ErrNoRows) {
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
	var c store.Cluster
	err := s.read(ctx, func(q querier) error {
		var err error
		c, err = scanCluster(q.QueryRow(ctx, `SELECT `+clusterColumns+` FROM clusters WHERE id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return store.Cluster{}, fmt.Errorf("get cluster %s: %w", id, err)
	}
	return c, nil
}

// ListClusters implements store.Store. The "C" collation of the
// (group_name, name) index orders byte-wise.
func (s *Store) ListClusters(ctx context.Context, f store.ClusterFilter) ([]store.Cluster, error) {
	query := `SELECT ` + clusterColumns + ` FROM clusters`
	var args []any
	if f.Group != "" {
		if err := store.ValidateName(f.Group); err != nil {
			return nil, fmt.Errorf("list clusters: group: %w", err)
		}
		query += ` WHERE group_name = $1`
		args = append(args, f.Group)
	}
	query += ` ORDER BY group_name, name`

	var cs []store.Cluster
	err := s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		cs, err = collect(rows, scanCluster)
		return err
	})
	if err != nil {
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
	err := s.write(ctx, func(tx pgx.Tx) error {
		if err := execOne(ctx, tx, `DELETE FROM clusters WHERE id = $1`, id); err != nil {
			return err
		}
		// Its role assignments go with it (at the cluster and its
		// namespaces), so a cluster re-created under the same name starts
		// with none. '0' follows '/': [id+"/", id+"0") is what begins id+"/".
		_, err := tx.Exec(ctx, `DELETE FROM role_assignments WHERE scope = $1 OR (scope >= $2 AND scope < $3)`, id, id+"/", id+"0")
		return err
	})
	if err != nil {
		return fmt.Errorf("delete cluster %s: %w", id, err)
	}
	return nil
}

// RecordHeartbeat implements store.Store.
func (s *Store) RecordHeartbeat(ctx context.Context, id string, hb store.Heartbeat) error {
	return s.updateCluster(ctx, "record heartbeat", id, hb, `
		UPDATE clusters SET agent_version = $2, kubernetes_version = $3, last_seen_at = $4
		WHERE id = $1`,
		hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At))
}

// RecordHeartbeats implements store.Store: one UPDATE, the heartbeats
// passed as arrays. Two calls that share clusters (two replicas holding
// tunnels of one cluster for a moment, while its agent moves) may, rarely,
// lock them in opposite orders: PostgreSQL then fails one with a deadlock,
// and that replica's next round records its heartbeats.
func (s *Store) RecordHeartbeats(ctx context.Context, hbs map[string]store.Heartbeat) error {
	if err := store.ValidateHeartbeats(hbs); err != nil {
		return err
	}
	ids := slices.Collect(maps.Keys(hbs))
	if len(ids) == 0 {
		return nil
	}
	agentVersions := make([]string, len(ids))
	kubeVersions := make([]string, len(ids))
	times := make([]pgtype.Timestamptz, len(ids))
	for i, id := range ids {
		hb := hbs[id]
		agentVersions[i], kubeVersions[i], times[i] = hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At)
	}
	err := s.read(ctx, func(q querier) error {
		// A cluster deleted meanwhile matches no row: skipped.
		_, err := q.Exec(ctx, `
			UPDATE clusters AS c
			SET agent_version = hb.agent_version, kubernetes_version = hb.kubernetes_version, last_seen_at = hb.at
			FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS hb(id, agent_version, kubernetes_version, at)
			WHERE c.id = hb.id`,
			ids, agentVersions, kubeVersions, times)
		return err
	})
	if err != nil {
		return fmt.Errorf("record heartbeats of %d clusters: %w", len(ids), err)
	}
	return nil
}

// ListAgentKeys implements store.Store: one query, one snapshot.
func (s *Store) ListAgentKeys(ctx context.Context, ids []string) (map[string][]byte, error) {
	keys, err := store.AgentKeysFor(ids)
	if err != nil || len(ids) == 0 {
		return keys, err
	}
	err = s.read(ctx, func(q querier) error {
		rows, err := q.Query(ctx, `SELECT id, agent_public_key FROM clusters WHERE id = ANY($1::text[])`, ids)
		if err != nil {
			return err
		}
		var (
			id  string
			key []byte
		)
		_, err = pgx.ForEachRow(rows, []any{&id, &key}, func() error {
			keys[id] = key
			return nil
		})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list agent keys: %w", err)
	}
	return keys, nil
}

// RecordAgentStatus implements store.Store.
func (s *Store) RecordAgentStatus(ctx context.Context, id string, st store.AgentStatus) error {
	return s.updateCluster(ctx, "record agent status", id, st, `
		UPDATE clusters SET status_agent_version = $2, status_kubernetes_version = $3,
			status_node_count = $4, status_last_error = $5, status_reported_at = $6
		WHERE id = $1`,
		st.AgentVersion, st.KubernetesVersion, st.NodeCount, st.LastError, dbTime(st.ReportedAt))
}

// SetTunnel implements store.Store. Every call is a change that the
// watches see, even one that records the holder already recorded: the
// trigger fires on every write of the tunnel columns.
func (s *Store) SetTunnel(ctx context.Context, id string, t store.Tunnel) error {
	return s.updateCluster(ctx, "set tunnel", id, t, `
		UPDATE clusters SET tunnel_replica = $2, tunnel_connected_at = $3
		WHERE id = $1`,
		t.Replica, dbTime(t.ConnectedAt))
}

// RecordConnection implements store.Store: one UPDATE, which the trigger
// sees as SetTunnel's.
func (s *Store) RecordConnection(ctx context.Context, id string, t store.Tunnel, hb store.Heartbeat) error {
	if err := store.ValidateConnection(id, t, hb); err != nil {
		return err
	}
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, `
			UPDATE clusters SET tunnel_replica = $2, tunnel_connected_at = $3,
				agent_version = $4, kubernetes_version = $5, last_seen_at = $6
			WHERE id = $1`,
			id, t.Replica, dbTime(t.ConnectedAt), hb.AgentVersion, hb.KubernetesVersion, dbTime(hb.At))
	})
	if err != nil {
		return fmt.Errorf("record connection of cluster %s: %w", id, err)
	}
	return nil
}

// updateCluster validates the cluster ID and v, then runs query, an UPDATE
// whose first parameter is the ID and which must touch the cluster's row
// (else store.ErrNotFound). what names the operation in errors.
func (s *Store) updateCluster(ctx context.Context, what, id string, v interface{ Validate() error }, query string, args ...any) error {
	if _, _, err := store.ParseClusterID(id); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%s of cluster %s: %w", what, id, err)
	}
	err := s.read(ctx, func(q querier) error {
		return execOne(ctx, q, query, append([]any{id}, args...)...)
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
	err := s.read(ctx, func(q querier) error {
		// One statement: the conditional update, and whether the cluster
		// exists, from the same snapshot.
		var exists bool
		err := q.QueryRow(ctx, `
			WITH cleared AS (
				UPDATE clusters SET tunnel_replica = '', tunnel_connected_at = NULL
				WHERE id = $1 AND tunnel_replica = $2 AND tunnel_connected_at = $3
				RETURNING id
			)
			SELECT EXISTS (SELECT 1 FROM cleared), EXISTS (SELECT 1 FROM clusters WHERE id = $1)`,
			id, t.Replica, dbTime(t.ConnectedAt)).Scan(&cleared, &exists)
		if err == nil && !cleared && !exists {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("clear tunnel of cluster %s: %w", id, err)
	}
	return cleared, nil
}

// clusterExists returns store.ErrNotFound unless the cluster exists.
func clusterExists(ctx context.Context, q querier, id string) error {
	var exists bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM clusters WHERE id = $1)`, id).Scan(&exists)
	if err != nil {
		return err
	}
	if !exists {
		return store.ErrNotFound
	}
	return nil
}
