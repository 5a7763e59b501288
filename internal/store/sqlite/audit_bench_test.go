package sqlite_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store/sqlite"
)

// BenchmarkAppendAudit appends batches of 256 gateway request events, as
// the hub's audit writer does under load; ns/op is per event.
func BenchmarkAppendAudit(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "hub.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := b.Context()
	batch := make([]audit.Event, 256)
	for i := range batch {
		batch[i] = audit.Event{
			Time: time.Now(), Type: "request", RequestID: fmt.Sprintf("req-%d", i), Replica: "hub-0",
			PrincipalType: "kubernetesToken", PrincipalName: "system:serviceaccount:default:demo-user", SourceAddr: "127.0.0.1:40000",
			Cluster: "/groups/bench/clusters/edge", AuthMode: "token", Decision: "allow", Reason: "a Kubernetes token, passed to the API server, which judges it",
			Verb: "get", Resource: "configmaps", Namespace: "bench", Name: "small", Path: "/api/v1/namespaces/bench/configmaps/small",
			Status: 200, BytesOut: 230, Duration: 900 * time.Microsecond,
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(batch) {
		if _, err := s.AppendAudit(ctx, batch[:min(len(batch), b.N-i)]); err != nil {
			b.Fatal(err)
		}
	}
}
