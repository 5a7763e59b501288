// Package storetest is the conformance suite for store.Store: every backend's
// tests call Run, so all backends behave alike.
//
// The suite uses only the store.Store interface and the conventions of
// package store (times in UTC, truncated to the microsecond; errors matched
// with errors.Is). It never sleeps: the clock is the suite's.
package storetest

import (
	"context"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tether.dev/tether/internal/store"
)

// Run runs the suite. open must return a new, empty store on each call and
// arrange its cleanup with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"CreateCluster", testCreateCluster},
		{"CreateClusterInvalid", testCreateClusterInvalid},
		{"CreateClusterConflict", testCreateClusterConflict},
		{"GetCluster", testGetCluster},
		{"ListClusters", testListClusters},
		{"DeleteCluster", testDeleteCluster},
		{"RecordHeartbeat", testRecordHeartbeat},
		{"Tunnel", testTunnel},
		{"TunnelErrors", testTunnelErrors},
		{"CreateJoinToken", testCreateJoinToken},
		{"RedeemJoinToken", testRedeemJoinToken},
		{"RedeemJoinTokenErrors", testRedeemJoinTokenErrors},
		{"RedeemJoinTokenConcurrent", testRedeemJoinTokenConcurrent},
		{"Reenroll", testReenroll},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.run(t, open(t))
		})
	}
}

// t0 is the suite's "now": not in UTC, and with nanoseconds, so the suite
// sees the store convert and truncate.
var t0 = time.Date(2025, time.March, 1, 12, 0, 0, 123456789, time.FixedZone("UTC+1", 60*60))

// at returns t0+d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// stored returns t as the store returns it: UTC, truncated to the
// microsecond; the zero time stays zero.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

// opts compare times by instant and location, so a time that is not in UTC
// differs.
var opts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) && a.Location() == b.Location() }),
	cmpopts.EquateEmpty(),
}

// hashOf returns the hash of the join token secret.
func hashOf(secret string) store.TokenHash { return sha256.Sum256([]byte(secret)) }

// newCluster is a valid cluster for CreateCluster.
func newCluster(group, name string) store.Cluster {
	return store.Cluster{Group: group, Name: name, Location: "eastus2", CreatedAt: t0}
}

// created is what the store returns for newCluster(group, name).
func created(group, name string) store.Cluster {
	return store.Cluster{
		ID:        store.ClusterID(group, name),
		Group:     group,
		Name:      name,
		Location:  "eastus2",
		Mode:      store.ModeKubernetesRBAC,
		CreatedAt: stored(t0),
	}
}

// mustCreate creates newCluster(group, name).
func mustCreate(ctx context.Context, t *testing.T, s store.Store, group, name string) store.Cluster {
	t.Helper()
	c, err := s.CreateCluster(ctx, newCluster(group, name))
	if err != nil {
		t.Fatalf("CreateCluster(%s, %s): %v", group, name, err)
	}
	return c
}

// mustGet returns the cluster with the given ID.
func mustGet(ctx context.Context, t *testing.T, s store.Store, id string) store.Cluster {
	t.Helper()
	c, err := s.GetCluster(ctx, id)
	if err != nil {
		t.Fatalf("GetCluster(%s): %v", id, err)
	}
	return c
}

// mustCreateToken stores a join token for cluster id, valid for an hour
// from t0, and returns its hash.
func mustCreateToken(ctx context.Context, t *testing.T, s store.Store, id, secret string) store.TokenHash {
	t.Helper()
	tok := store.JoinToken{Hash: hashOf(secret), ClusterID: id, CreatedAt: t0, ExpiresAt: at(time.Hour)}
	if err := s.CreateJoinToken(ctx, tok); err != nil {
		t.Fatalf("CreateJoinToken(%s): %v", id, err)
	}
	return tok.Hash
}
