package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"tether.dev/tether/internal/store"
)

// CreateJoinToken implements store.Store.
func (s *Store) CreateJoinToken(ctx context.Context, tok store.JoinToken) error {
	if err := tok.Validate(); err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := clusterExists(ctx, tx, tok.ClusterID); err != nil {
			return fmt.Errorf("cluster %s: %w", tok.ClusterID, err)
		}
		res, err := tx.ExecContext(ctx, `
			INSERT INTO join_tokens (hash, cluster_id, created_at, expires_at)
			VALUES (?, ?, ?, ?)
			ON CONFLICT DO NOTHING`,
			tok.Hash[:], tok.ClusterID, dbTime(tok.CreatedAt), dbTime(tok.ExpiresAt))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("token hash: %w", store.ErrConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	return nil
}

// RedeemJoinToken implements store.Store. The conditional UPDATE claims the
// token, so at most one caller can; the write transaction makes the claim
// and the enrollment one change.
func (s *Store) RedeemJoinToken(ctx context.Context, hash store.TokenHash, now time.Time, publicKey []byte) (store.Cluster, error) {
	if now.IsZero() {
		return store.Cluster{}, fmt.Errorf("redeem join token: time is required: %w", store.ErrInvalid)
	}
	if err := store.ValidatePublicKey(publicKey); err != nil {
		return store.Cluster{}, fmt.Errorf("redeem join token: %w", err)
	}
	at := dbTime(now)
	var enrolled store.Cluster
	err := s.writeChanged(ctx, func(tx *sql.Tx) ([]string, error) {
		var clusterID string
		err := tx.QueryRowContext(ctx, `
			UPDATE join_tokens SET used_at = ?
			WHERE hash = ? AND used_at IS NULL AND expires_at > ?
			RETURNING cluster_id`,
			at, hash[:], at).Scan(&clusterID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, whyNotRedeemable(ctx, tx, hash)
		}
		if err != nil {
			return nil, err
		}
		enrolled, err = scanCluster(tx.QueryRowContext(ctx, `
			UPDATE clusters SET agent_public_key = ?, enrolled_at = ?
			WHERE id = ?
			RETURNING `+clusterColumns,
			publicKey, at, clusterID))
		return []string{clusterID}, err
	})
	switch {
	case err == nil:
		return enrolled, nil
	case errors.Is(err, store.ErrTokenInvalid), errors.Is(err, store.ErrTokenUsed), errors.Is(err, store.ErrTokenExpired):
		return store.Cluster{}, err
	default:
		return store.Cluster{}, fmt.Errorf("redeem join token: %w", err)
	}
}

// whyNotRedeemable returns the error for a token that the claiming UPDATE
// did not match.
func whyNotRedeemable(ctx context.Context, tx *sql.Tx, hash store.TokenHash) error {
	var used sql.NullInt64
	err := tx.QueryRowContext(ctx, `SELECT used_at FROM join_tokens WHERE hash = ?`, hash[:]).Scan(&used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return store.ErrTokenInvalid
	case err != nil:
		return err
	case used.Valid:
		return store.ErrTokenUsed
	default:
		return store.ErrTokenExpired
	}
}
