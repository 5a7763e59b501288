package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"tether.dev/tether/internal/store"
)

// TestConnectionFailed pins which errors are the server's absence, which
// callers see as store.ErrUnavailable, and which are answers to pass on.
func TestConnectionFailed(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	pgErr := func(code string) error { return &pgconn.PgError{Severity: "FATAL", Code: code} }
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"shutting down", live, pgErr("57P01"), true},
		{"crashed", live, pgErr("57P02"), true},
		{"starting up", live, pgErr("57P03"), true},
		{"too many connections", live, pgErr("53300"), true},
		{"connection exception", live, pgErr("08006"), true},
		{"connection refused", live, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{"connection reset", live, fmt.Errorf("read: %w", syscall.ECONNRESET), true},
		{"server closed the connection", live, fmt.Errorf("receive message: %w", io.ErrUnexpectedEOF), true},
		{"connection closed by pgx", live, fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
		{"unique violation", live, pgErr("23505"), false},
		{"foreign key violation", live, pgErr("23503"), false},
		{"wrong password", live, pgErr("28P01"), false},
		{"no such database", live, pgErr("3D000"), false},
		{"query cancelled by the caller", cancelled, fmt.Errorf("query: %w", context.Canceled), false},
		{"a store error", live, store.ErrNotFound, false},
		{"wrapped already", live, fmt.Errorf("%w: %w", store.ErrUnavailable, io.EOF), false},
		{"other", live, errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := connectionFailed(tt.ctx, tt.err); got != tt.want {
				t.Errorf("connectionFailed(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
