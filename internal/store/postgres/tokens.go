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

// CreateJoinToken implements store.Store.
func (s *Store) CreateJoinToken(ctx context.Context, tok store.JoinToken) error {
	if err := tok.Validate(); err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	err := s.write(ctx, func(tx pgx.Tx) error {
		// The cluster first, as the interface orders the errors; a cluster
		// deleted meanwhile fails the foreign key.
		if err := clusterExists(ctx, tx, tok.ClusterID); err != nil {
			return fmt.Errorf("cluster %s: %w", tok.ClusterID, err)
		}
		err := insertOne(ctx, tx, `
			INSERT INTO join_tokens (hash, cluster_id, created_at, expires_at)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT DO NOTHING`,
			tok.Hash[:], tok.ClusterID, dbTime(tok.CreatedAt), dbTime(tok.ExpiresAt))
		switch {
		case errors.Is(err, store.ErrConflict):
			return fmt.Errorf("token hash: %w", err)
		case isViolation(err, foreignKeyViolation):
			return fmt.Errorf("cluster %s: %w", tok.ClusterID, store.ErrNotFound)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("create join token: %w", err)
	}
	return nil
}

// RedeemJoinToken implements store.Store. The conditional UPDATE claims the
// token: a concurrent redemption waits for the row and then finds it used,
// so at most one caller claims it; the transaction makes the claim and the
// enrollment one change.
func (s *Store) RedeemJoinToken(ctx context.Context, hash store.TokenHash, now time.Time, publicKey []byte) (store.Cluster, error) {
	if err := requireNow(now); err != nil {
		return store.Cluster{}, fmt.Errorf("redeem join token: %w", err)
	}
	if err := store.ValidatePublicKey(publicKey); err != nil {
		return store.Cluster{}, fmt.Errorf("redeem join token: %w", err)
	}
	at := dbTime(now)
	var enrolled store.Cluster
	err := s.write(ctx, func(tx pgx.Tx) error {
		var clusterID string
		err := tx.QueryRow(ctx, `
			UPDATE join_tokens SET used_at = $2
			WHERE hash = $1 AND used_at IS NULL AND expires_at > $2
			RETURNING cluster_id`,
			hash[:], at).Scan(&clusterID)
		if errors.Is(err, pgx.ErrNoRows) {
			return whyNotRedeemable(ctx, tx, hash)
		}
		if err != nil {
			return err
		}
		enrolled, err = scanCluster(tx.QueryRow(ctx, `
			UPDATE clusters SET agent_public_key = $2, enrolled_at = $3
			WHERE id = $1
			RETURNING `+clusterColumns,
			clusterID, publicKey, at))
		return err
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
func whyNotRedeemable(ctx context.Context, q querier, hash store.TokenHash) error {
	var used pgtype.Timestamptz
	err := q.QueryRow(ctx, `SELECT used_at FROM join_tokens WHERE hash = $1`, hash[:]).Scan(&used)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return store.ErrTokenInvalid
	case err != nil:
		return err
	case used.Valid:
		return store.ErrTokenUsed
	default:
		return store.ErrTokenExpired
	}
}
