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
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"tether.dev/tether/internal/access"
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
		{"RecordHeartbeats", testRecordHeartbeats},
		{"ListAgentKeys", testListAgentKeys},
		{"RecordAgentStatus", testRecordAgentStatus},
		{"RecordAgentStatusInvalid", testRecordAgentStatusInvalid},
		{"Tunnel", testTunnel},
		{"TunnelErrors", testTunnelErrors},
		{"RecordConnection", testRecordConnection},
		{"CreateJoinToken", testCreateJoinToken},
		{"RedeemJoinToken", testRedeemJoinToken},
		{"RedeemJoinTokenErrors", testRedeemJoinTokenErrors},
		{"RedeemJoinTokenConcurrent", testRedeemJoinTokenConcurrent},
		{"Reenroll", testReenroll},

		{"CreatePrincipal", testCreatePrincipal},
		{"CreatePrincipalInvalid", testCreatePrincipalInvalid},
		{"CreatePrincipalConflict", testCreatePrincipalConflict},
		{"CreatePrincipalConcurrent", testCreatePrincipalConcurrent},
		{"GetPrincipal", testGetPrincipal},
		{"GetUserByLogin", testGetUserByLogin},
		{"GetServicePrincipalByClientID", testGetServicePrincipalByClientID},
		{"ListPrincipals", testListPrincipals},
		{"SetDisplayName", testSetDisplayName},
		{"SetPasswordHash", testSetPasswordHash},
		{"DeletePrincipal", testDeletePrincipal},

		{"CreateClientSecret", testCreateClientSecret},
		{"ListClientSecrets", testListClientSecrets},
		{"DeleteClientSecret", testDeleteClientSecret},
		{"FindClientSecrets", testFindClientSecrets},

		{"AddMember", testAddMember},
		{"AddMemberConcurrentCycle", testAddMemberConcurrentCycle},
		{"RemoveMember", testRemoveMember},
		{"ListMembers", testListMembers},
		{"GroupsOf", testGroupsOf},
		{"GroupsOfMany", testGroupsOfMany},

		{"CreateRoleAssignment", testCreateRoleAssignment},
		{"CreateRoleAssignmentInvalid", testCreateRoleAssignmentInvalid},
		{"CreateRoleAssignmentConflict", testCreateRoleAssignmentConflict},
		{"CreateRoleAssignmentConcurrent", testCreateRoleAssignmentConcurrent},
		{"GetRoleAssignment", testGetRoleAssignment},
		{"ListRoleAssignments", testListRoleAssignments},
		{"DeleteRoleAssignment", testDeleteRoleAssignment},

		{"RenewReplica", testRenewReplica},
		{"RenewReplicaInvalid", testRenewReplicaInvalid},
		{"ListReplicas", testListReplicas},
		{"RemoveReplica", testRemoveReplica},
		{"ExpireReplicas", testExpireReplicas},
		{"ListTunnels", testListTunnels},

		{"PutEphemeral", testPutEphemeral},
		{"PutEphemeralConcurrent", testPutEphemeralConcurrent},
		{"EphemeralInvalid", testEphemeralInvalid},
		{"UpdateEphemeral", testUpdateEphemeral},
		{"UpdateEphemeralConcurrent", testUpdateEphemeralConcurrent},
		{"TakeEphemeral", testTakeEphemeral},
		{"TakeEphemeralConcurrent", testTakeEphemeralConcurrent},
		{"DeleteEphemeral", testDeleteEphemeral},
		{"CountEphemeral", testCountEphemeral},
		{"PurgeEphemeral", testPurgeEphemeral},
		{"EphemeralNoAlias", testEphemeralNoAlias},

		{"AppendAudit", testAppendAudit},
		{"AuditFields", testAuditFields},
		{"AppendAuditInvalid", testAppendAuditInvalid},
		{"AppendAuditConcurrent", testAppendAuditConcurrent},
		{"ListAudit", testListAudit},
		{"ListAuditLimit", testListAuditLimit},
		{"ListAuditInvalid", testListAuditInvalid},
		{"AuditNoAlias", testAuditNoAlias},

		{"WatchClusters", testWatchClusters},
		{"WatchClustersTwice", testWatchClustersTwice},
		{"WatchClustersCancelled", testWatchClustersCancelled},
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

// UUIDs of the suite: uuid(kind, n) for n > 0 is "0000000{kind}-0000-4000-8000-{n}",
// so IDs of one kind sort in the order of n.
func uuid(kind, n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", kind, n) }

// pid is a principal's object ID, cid a client ID, sid a client secret's
// ID, aid a role assignment's ID.
func pid(n int) string { return uuid(1, n) }
func cid(n int) string { return uuid(2, n) }
func sid(n int) string { return uuid(3, n) }
func aid(n int) string { return uuid(4, n) }

// newUser is a valid user for CreatePrincipal, without a password.
func newUser(n int, name, login string) store.Principal {
	return store.Principal{ID: pid(n), Type: access.PrincipalUser, DisplayName: name, LoginName: login, CreatedAt: t0}
}

// newSP is a valid service principal for CreatePrincipal, with client ID
// cid(n).
func newSP(n int, name string) store.Principal {
	return store.Principal{ID: pid(n), Type: access.PrincipalServicePrincipal, DisplayName: name, ClientID: cid(n), CreatedAt: t0}
}

// newGroup is a valid group for CreatePrincipal.
func newGroup(n int, name string) store.Principal {
	return store.Principal{ID: pid(n), Type: access.PrincipalGroup, DisplayName: name, CreatedAt: t0}
}

// withPassword returns p with a password hash.
func withPassword(p store.Principal, hash string) store.Principal {
	p.PasswordHash = []byte(hash)
	return p
}

// listed is p as reads other than GetUserByLogin return it: stored times,
// no password hash.
func listed(p store.Principal) store.Principal {
	p.CreatedAt = stored(p.CreatedAt)
	p.PasswordHash = nil
	return p
}

// signIn is p as GetUserByLogin returns it: stored times, with its password
// hash.
func signIn(p store.Principal) store.Principal {
	p.CreatedAt = stored(p.CreatedAt)
	return p
}

// mustCreatePrincipal creates p and returns it as listed.
func mustCreatePrincipal(ctx context.Context, t *testing.T, s store.Store, p store.Principal) store.Principal {
	t.Helper()
	if err := s.CreatePrincipal(ctx, p); err != nil {
		t.Fatalf("CreatePrincipal(%s %s): %v", p.Type, p.DisplayName, err)
	}
	return listed(p)
}

// mustAddMember makes member a member of group.
func mustAddMember(ctx context.Context, t *testing.T, s store.Store, group, member string) {
	t.Helper()
	if err := s.AddMember(ctx, group, member); err != nil {
		t.Fatalf("AddMember(%s, %s): %v", group, member, err)
	}
}

// secretHashOf returns the hash of a client secret.
func secretHashOf(secret string) store.SecretHash { return sha256.Sum256([]byte(secret)) }

// newSecret is a valid client secret sid(n) of principal, whose secret is
// its description, created at t0+created and expiring at t0+expires.
func newSecret(n int, principal, description string, created, expires time.Duration) store.ClientSecret {
	return store.ClientSecret{
		ID:          sid(n),
		PrincipalID: principal,
		Hash:        secretHashOf(description),
		Description: description,
		CreatedAt:   at(created),
		ExpiresAt:   at(expires),
	}
}

// storedSecret is sec as FindClientSecrets returns it; listedSecret as
// ListClientSecrets does, without its hash.
func storedSecret(sec store.ClientSecret) store.ClientSecret {
	sec.CreatedAt, sec.ExpiresAt = stored(sec.CreatedAt), stored(sec.ExpiresAt)
	return sec
}

func listedSecret(sec store.ClientSecret) store.ClientSecret {
	sec = storedSecret(sec)
	sec.Hash = store.SecretHash{}
	return sec
}

// mustCreateSecret creates sec.
func mustCreateSecret(ctx context.Context, t *testing.T, s store.Store, sec store.ClientSecret) {
	t.Helper()
	if err := s.CreateClientSecret(ctx, sec); err != nil {
		t.Fatalf("CreateClientSecret(%s): %v", sec.Description, err)
	}
}

// newAssignment is a valid role assignment aid(n), created at t0.
func newAssignment(n int, principal string, typ access.PrincipalType, role, scope string) store.RoleAssignment {
	return store.RoleAssignment{
		Assignment: access.Assignment{ID: aid(n), PrincipalID: principal, PrincipalType: typ, RoleID: role, Scope: scope},
		CreatedAt:  t0,
	}
}

// storedAssignment is a as the store returns it.
func storedAssignment(a store.RoleAssignment) store.RoleAssignment {
	a.CreatedAt = stored(a.CreatedAt)
	return a
}

// mustCreateAssignment creates a and returns it as stored.
func mustCreateAssignment(ctx context.Context, t *testing.T, s store.Store, a store.RoleAssignment) store.RoleAssignment {
	t.Helper()
	if err := s.CreateRoleAssignment(ctx, a); err != nil {
		t.Fatalf("CreateRoleAssignment(%s %s at %s): %v", a.PrincipalID, a.RoleID, a.Scope, err)
	}
	return storedAssignment(a)
}

// race runs f(0) ... f(n-1) at the same moment, each in its own goroutine,
// and returns their errors by index.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n) // errs[i] is written by goroutine i only
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = f(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// exactlyOne checks that exactly one of errs is nil and every other is
// loser, and returns the winner's index.
func exactlyOne(t *testing.T, what string, errs []error, loser error) int {
	t.Helper()
	var winners []int
	for i, err := range errs {
		switch {
		case err == nil:
			winners = append(winners, i)
		case !errors.Is(err, loser):
			t.Errorf("%s %d: %v, want nil or %v", what, i, err, loser)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d %ss succeeded (%v), want exactly 1", len(winners), what, winners)
	}
	return winners[0]
}
