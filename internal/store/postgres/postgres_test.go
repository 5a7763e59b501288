package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/postgres"
	"tether.dev/tether/internal/store/storetest"
	"tether.dev/tether/test/pgserver"
)

// server is the PostgreSQL server that the tests share, each in databases
// of its own; TestMain starts and stops it. Tests that stop a server start
// their own.
var server *pgserver.Server

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

// runTests runs the tests beside the shared server, then checks that
// nothing they started is left running.
func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	s, err := pgserver.Launch(ctx)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
		return 1
	}
	server = s
	code := m.Run()
	if err := s.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "pgserver: %v\n", err)
		code = 1
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	return code
}

// openStore opens the store at dsn and closes it when the test ends.
func openStore(t *testing.T, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, server.NewDatabase(t))
	})
}

// TestOpenUnreachable checks that a server that is not there is reported
// as unavailable, promptly.
func TestOpenUnreachable(t *testing.T) {
	// A loopback port that was free a moment ago: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, "postgres://postgres@"+addr+"/tether?sslmode=disable")
	if err == nil {
		s.Close()
		t.Fatal("Open of a server that is not there succeeded")
	}
	if !errors.Is(err, store.ErrUnavailable) || ctx.Err() != nil {
		t.Errorf("Open = %v (context: %v), want an error matching %v before the deadline", err, ctx.Err(), store.ErrUnavailable)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
	}{
		{"malformed DSN", "postgres://postgres@127.0.0.1:notaport/db"},
		{"unknown database", server.DSN("no_such_database")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := postgres.Open(t.Context(), tt.dsn)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%s) succeeded", tt.dsn)
			}
			if errors.Is(err, store.ErrUnavailable) {
				t.Errorf("Open(%s) = %v, want an error that is not %v", tt.dsn, err, store.ErrUnavailable)
			}
		})
	}
}

// TestClose checks that Close ends a running watch, is idempotent, and
// that calls fail after it, without claiming that the server is
// unavailable.
func TestClose(t *testing.T) {
	s, err := postgres.Open(t.Context(), server.NewDatabase(t))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	started := make(chan struct{})
	watchErr := make(chan error, 1) // the watch's result; it never waits to send
	go func() {
		watchErr <- s.WatchClusters(t.Context(), func(id string) {
			if id == "" {
				close(started)
			}
		})
	}()
	timer := time.NewTimer(waitTimeout)
	defer timer.Stop()
	select {
	case <-started:
	case err := <-watchErr:
		t.Fatalf("WatchClusters returned %v before calling back", err)
	case <-timer.C:
		t.Fatalf("the watch did not start within %s", waitTimeout)
	}

	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-watchErr:
		if err == nil {
			t.Error("WatchClusters ended by Close = nil, want an error")
		}
	case <-timer.C:
		t.Fatalf("the watch did not end within %s of Close", waitTimeout)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = s.ListClusters(t.Context(), store.ClusterFilter{})
	if err == nil || errors.Is(err, store.ErrUnavailable) {
		t.Errorf("ListClusters after Close = %v, want an error that is not %v", err, store.ErrUnavailable)
	}
	if err := s.WatchClusters(t.Context(), func(string) { t.Error("watch of a closed store called its callback") }); err == nil {
		t.Error("WatchClusters after Close = nil, want an error")
	}
}
