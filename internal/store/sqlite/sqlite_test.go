package sqlite_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
	"tether.dev/tether/internal/store/storetest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// openAt opens the store at path and closes it when the test ends.
func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
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
		return openAt(t, filepath.Join(t.TempDir(), "hub.db"))
	})
}

func TestPersistence(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hub.db")
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)
	hash := store.TokenHash{1, 2, 3}

	s, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	for _, name := range []string{"web", "api"} {
		c := store.Cluster{Group: "prod", Name: name, Location: "eastus2", Mode: store.ModeHubRBAC, CreatedAt: t0}
		if _, err := s.CreateCluster(ctx, c); err != nil {
			t.Fatalf("CreateCluster: %v", err)
		}
	}
	web := store.ClusterID("prod", "web")
	tok := store.JoinToken{Hash: hash, ClusterID: web, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateJoinToken(ctx, tok); err != nil {
		t.Fatalf("CreateJoinToken: %v", err)
	}
	hb := store.Heartbeat{AgentVersion: "v0.1.0", KubernetesVersion: "v1.31.2", At: t0.Add(time.Minute)}
	if err := s.RecordHeartbeat(ctx, web, hb); err != nil {
		t.Fatalf("RecordHeartbeat: %v", err)
	}
	if err := s.SetTunnel(ctx, web, store.Tunnel{Replica: "hub-0", ConnectedAt: t0.Add(time.Minute)}); err != nil {
		t.Fatalf("SetTunnel: %v", err)
	}
	want, err := s.ListClusters(ctx, store.ClusterFilter{})
	if err != nil {
		t.Fatalf("ListClusters: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	s2 := openAt(t, path)
	got, err := s2.ListClusters(ctx, store.ClusterFilter{})
	if err != nil {
		t.Fatalf("ListClusters after reopen: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("clusters after reopen (-want +got):\n%s", diff)
	}
	// The token persisted, unused.
	if _, err := s2.RedeemJoinToken(ctx, hash, t0.Add(2*time.Minute), []byte("key")); err != nil {
		t.Errorf("RedeemJoinToken after reopen: %v", err)
	}
}

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "tether")
	path := filepath.Join(dir, "hub.db")
	s := openAt(t, path)
	// A write, so the WAL files exist.
	c := store.Cluster{Group: "prod", Name: "web", CreatedAt: time.Unix(0, 0)}
	if _, err := s.CreateCluster(t.Context(), c); err != nil {
		t.Fatalf("CreateCluster: %v", err)
	}

	tests := []struct {
		name string
		path string
		want fs.FileMode
	}{
		{"parent directory", filepath.Dir(dir), fs.ModeDir | 0o700},
		{"directory", dir, fs.ModeDir | 0o700},
		{"database", path, 0o600},
		{"write-ahead log", path + "-wal", 0o600},
		{"shared memory", path + "-shm", 0o600},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fi, err := os.Stat(tt.path)
			if err != nil {
				t.Fatalf("Stat: %v", err)
			}
			if got := fi.Mode(); got != tt.want {
				t.Errorf("mode of %s = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	notDir := filepath.Join(dir, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
	}{
		{"empty path", ""},
		{"path is a directory", dir},
		{"parent is a file", filepath.Join(notDir, "hub.db")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := sqlite.Open(t.Context(), tt.path)
			if err == nil {
				s.Close()
				t.Fatalf("Open(%q) succeeded, want an error", tt.path)
			}
		})
	}
}

// TestConcurrentWritesTwoHandles writes through two Stores on one file at
// once: the Store's write slot serializes only its own transactions, so the
// two contend for SQLite's write lock, which BEGIN IMMEDIATE and the busy
// timeout must resolve without a call failing (no "database is locked").
// RenewReplica reads before it writes: in a deferred transaction, the
// upgrade to a writer fails at once rather than wait.
func TestConcurrentWritesTwoHandles(t *testing.T) {
	const (
		writers = 8
		rounds  = 10 // of 5 writes each: 50 per writer
	)
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "hub.db")
	handles := []*sqlite.Store{openAt(t, path), openAt(t, path)}
	t0 := time.Date(2025, time.March, 1, 12, 0, 0, 0, time.UTC)

	errs := make([][]error, writers) // errs[i] is written by writer i only
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			s := handles[i%len(handles)]
			<-start
			for r := range rounds {
				name := fmt.Sprintf("w%d-r%d", i, r)
				c, err := s.CreateCluster(ctx, store.Cluster{Group: "load", Name: name, CreatedAt: t0})
				errs[i] = append(errs[i], err)
				errs[i] = append(errs[i], s.SetTunnel(ctx, c.ID, store.Tunnel{Replica: "hub-0", ConnectedAt: t0}))
				e := store.Ephemeral{Kind: "load", Key: name, Value: []byte("1"), ExpiresAt: t0.Add(time.Hour)}
				errs[i] = append(errs[i], s.PutEphemeral(ctx, e, t0))
				e.Version, e.Value = 1, []byte("2")
				_, err = s.UpdateEphemeral(ctx, e, t0)
				errs[i] = append(errs[i], err)
				r := store.Replica{Name: fmt.Sprintf("hub-%d", i), URL: "https://hub.example", ExpiresAt: t0.Add(time.Duration(r+1) * time.Minute)}
				_, err = s.RenewReplica(ctx, r, t0)
				errs[i] = append(errs[i], err)
			}
		})
	}
	close(start)
	wg.Wait()
	for i, es := range errs {
		for j, err := range es {
			if err != nil {
				t.Errorf("writer %d, write %d: %v", i, j, err)
			}
		}
	}

	// Every write landed, whichever handle reads.
	for h, s := range handles {
		tunnels, err := s.ListTunnels(ctx)
		if err != nil {
			t.Fatalf("ListTunnels: %v", err)
		}
		if len(tunnels) != writers*rounds {
			t.Errorf("handle %d: %d tunnels, want %d", h, len(tunnels), writers*rounds)
		}
		n, err := s.CountEphemeral(ctx, "load", t0)
		if err != nil {
			t.Fatalf("CountEphemeral: %v", err)
		}
		if n != writers*rounds {
			t.Errorf("handle %d: %d ephemeral records, want %d", h, n, writers*rounds)
		}
	}
}

// BenchmarkGroupsOf resolves the groups of a user who is a direct member of
// 500 groups that are also nested in a chain 500 deep: the walk meets every
// group twice.
func BenchmarkGroupsOf(b *testing.B) {
	const n = 500
	ctx := b.Context()
	s, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "hub.db"))
	if err != nil {
		b.Fatalf("Open: %v", err)
	}
	defer s.Close()
	id := func(n int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012x", n) }
	user := store.Principal{ID: id(1), Type: access.PrincipalUser, DisplayName: "user", LoginName: "user@example.com", CreatedAt: time.Unix(0, 0)}
	if err := s.CreatePrincipal(ctx, user); err != nil {
		b.Fatalf("CreatePrincipal: %v", err)
	}
	for i := range n {
		g := store.Principal{ID: id(1000 + i), Type: access.PrincipalGroup, DisplayName: fmt.Sprintf("g%d", i), CreatedAt: time.Unix(0, 0)}
		if err := s.CreatePrincipal(ctx, g); err != nil {
			b.Fatalf("CreatePrincipal: %v", err)
		}
		if err := s.AddMember(ctx, g.ID, user.ID); err != nil {
			b.Fatalf("AddMember: %v", err)
		}
		if i > 0 {
			if err := s.AddMember(ctx, g.ID, id(1000+i-1)); err != nil {
				b.Fatalf("AddMember: %v", err)
			}
		}
	}
	for b.Loop() {
		groups, err := s.GroupsOf(ctx, user.ID)
		if err != nil {
			b.Fatalf("GroupsOf: %v", err)
		}
		if len(groups) != n {
			b.Fatalf("GroupsOf = %d groups, want %d", len(groups), n)
		}
	}
}
