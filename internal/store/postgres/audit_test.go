package postgres_test

import (
	"context"
	"testing"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/storetest"
)

// TestAuditTamper changes the audit trail behind the store's back, as
// someone with access to the database could: Verify over what ListAudit
// returns finds where.
func TestAuditTamper(t *testing.T) {
	cases := storetest.AuditTamperCases(`event_time + interval '1 microsecond'`, `decode(repeat('00', 32), 'hex')`)
	storetest.RunAuditTamper(t, cases, func(t *testing.T) (store.Store, func(context.Context, string) error) {
		dsn := server.NewDatabase(t)
		s := openStore(t, dsn)
		conn := connect(t, dsn)
		return s, func(ctx context.Context, stmt string) error {
			_, err := conn.Exec(ctx, stmt)
			return err
		}
	})
}

// TestAppendAuditTwoReplicas appends through two Stores on one database
// at once, as two hub replicas do: each with its pool of connections, so
// only the advisory lock orders the appends.
func TestAppendAuditTwoReplicas(t *testing.T) {
	dsn := server.NewDatabase(t)
	storetest.RunConcurrentAppends(t, []store.Store{openStore(t, dsn), openStore(t, dsn)}, 8, 20)
}
