package postgres_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
	"tether.dev/tether/test/pgserver"
)

// outageTimeout is how long a call may take to fail while the server is
// down; the calls must fail by themselves, well before it.
const outageTimeout = 10 * time.Second

// TestOutage stops the server under two replicas' Stores and a watch,
// then starts it again: while it is down calls fail promptly with
// store.ErrUnavailable; once it is up the same Stores work again, and the
// watch reconnects, says "" (changes may have been missed) and sees
// changes again.
func TestOutage(t *testing.T) {
	srv := pgserver.Start(t) // its own server: this test stops it
	dsn := srv.NewDatabase(t)
	a, b := openStore(t, dsn), openStore(t, dsn)
	ids := watch(t, a)
	if got := next(t, ids); got != "" {
		t.Fatalf("first notification = %q, want %q", got, "")
	}
	web := mustCreateCluster(t, b, "web")
	hubB := store.Tunnel{Replica: "hub-b", ConnectedAt: t0}
	if err := b.SetTunnel(t.Context(), web, hubB); err != nil {
		t.Fatalf("SetTunnel: %v", err)
	}
	if got := next(t, ids); got != web {
		t.Fatalf("notification = %q, want %q", got, web)
	}

	srv.Stop(t)
	// Reads, writes and transactions on both replicas, whose pools hold
	// connections that the shutdown ended; and a new Open.
	down := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"read", func(ctx context.Context) error {
			_, err := a.GetCluster(ctx, web)
			return err
		}},
		{"statement", func(ctx context.Context) error {
			return b.RecordHeartbeat(ctx, web, store.Heartbeat{AgentVersion: "v1", At: t0})
		}},
		{"transaction", func(ctx context.Context) error {
			_, err := b.RedeemJoinToken(ctx, store.TokenHash{1}, t0, []byte("key"))
			return err
		}},
		{"audit append, a transaction with a batch", func(ctx context.Context) error {
			_, err := a.AppendAudit(ctx, []audit.Event{{Time: t0, Type: audit.TypeRequest, Decision: audit.DecisionAllow}})
			return err
		}},
		{"audit list", func(ctx context.Context) error {
			_, err := b.ListAudit(ctx, store.AuditFilter{Cluster: web})
			return err
		}},
		{"again, on a fresh connection", func(ctx context.Context) error {
			_, err := a.ListTunnels(ctx)
			return err
		}},
		{"open", func(ctx context.Context) error {
			s, err := postgres.Open(ctx, dsn)
			if err == nil {
				s.Close()
			}
			return err
		}},
	}
	for _, tt := range down {
		t.Run("down/"+tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), outageTimeout)
			defer cancel()
			err := tt.call(ctx)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("call = %v, want an error matching %v", err, store.ErrUnavailable)
			}
			if ctx.Err() != nil {
				t.Errorf("the call failed only when its context ended (%v): it should fail by itself", ctx.Err())
			}
		})
	}

	srv.Restart(t)
	// The first calls after the restart succeed: the pools dropped the
	// connections that the outage broke.
	got, err := a.GetCluster(t.Context(), web)
	if err != nil {
		t.Fatalf("GetCluster after restart: %v", err)
	}
	if got.Tunnel.Replica != hubB.Replica {
		t.Errorf("tunnel after restart = %+v, want %+v", got.Tunnel, hubB)
	}
	// The watch reconnected: "" first, since it may have missed changes,
	// then the changes since.
	if got := next(t, ids); got != "" {
		t.Errorf("first notification after restart = %q, want %q", got, "")
	}
	if cleared, err := b.ClearTunnel(t.Context(), web, hubB); err != nil || !cleared {
		t.Fatalf("ClearTunnel after restart = %v, %v; want true, nil", cleared, err)
	}
	if got := next(t, ids); got != web {
		t.Errorf("notification after restart = %q, want %q", got, web)
	}
}
