package store

import (
	"context"
	"time"

	"tether.dev/tether/internal/audit"
)

// Observer is told of every call to an instrumented store: the method's
// name (op, one of Operations()), when it started and what it returned. It
// must be cheap and safe for concurrent use (a metric's Observe).
type Observer func(op string, start time.Time, err error)

// Instrument returns st with every call reported to observe after it
// returns: for the hub's store query duration metric. The result
// implements Watcher when st does (WatchClusters, which lasts as long as
// its context, is passed through unobserved), so the hub's check for a
// store that can run replicas sees through it. Close is passed through too.
//
// Every method of Store is written out below (no embedded Store): a
// method added to Store and forgotten here fails to compile rather than
// going unmeasured.
func Instrument(st Store, observe Observer) Store {
	s := &instrumented{inner: st, observer: observe}
	if w, ok := st.(Watcher); ok {
		return &instrumentedWatcher{instrumented: s, watcher: w}
	}
	return s
}

// Operations returns the names Instrument reports, one per method of
// Store that is observed: the metric's label values, known in advance.
func Operations() []string {
	return []string{
		"CreateCluster",
		"GetCluster",
		"ListClusters",
		"DeleteCluster",
		"RecordHeartbeat",
		"RecordHeartbeats",
		"ListAgentKeys",
		"RecordAgentStatus",
		"SetTunnel",
		"RecordConnection",
		"ClearTunnel",
		"CreateJoinToken",
		"RedeemJoinToken",
		"CreatePrincipal",
		"GetPrincipal",
		"GetUserByLogin",
		"GetServicePrincipalByClientID",
		"ListPrincipals",
		"SetDisplayName",
		"SetPasswordHash",
		"DeletePrincipal",
		"CreateClientSecret",
		"ListClientSecrets",
		"DeleteClientSecret",
		"FindClientSecrets",
		"AddMember",
		"RemoveMember",
		"ListMembers",
		"GroupsOf",
		"CreateRoleAssignment",
		"GetRoleAssignment",
		"ListRoleAssignments",
		"DeleteRoleAssignment",
		"RenewReplica",
		"ListReplicas",
		"RemoveReplica",
		"ExpireReplicas",
		"ListTunnels",
		"PutEphemeral",
		"GetEphemeral",
		"UpdateEphemeral",
		"TakeEphemeral",
		"DeleteEphemeral",
		"CountEphemeral",
		"PurgeEphemeral",
		"AppendAudit",
		"ListAudit",
	}
}

var (
	_ Store   = (*instrumented)(nil)
	_ Store   = (*instrumentedWatcher)(nil)
	_ Watcher = (*instrumentedWatcher)(nil)
)

// instrumented is Instrument's Store.
type instrumented struct {
	inner    Store
	observer Observer
}

// instrumentedWatcher is instrumented for a store that is also a Watcher.
type instrumentedWatcher struct {
	*instrumented
	watcher Watcher
}

// WatchClusters implements Watcher. It is not observed: it lasts until ctx
// ends.
func (s *instrumentedWatcher) WatchClusters(ctx context.Context, fn func(clusterID string)) error {
	return s.watcher.WatchClusters(ctx, fn)
}

func (s *instrumented) observe(op string, start time.Time, err *error) {
	s.observer(op, start, *err)
}

// Close implements Store. It is not observed.
func (s *instrumented) Close() error { return s.inner.Close() }

// CreateCluster implements Store.
func (s *instrumented) CreateCluster(ctx context.Context, c Cluster) (r0 Cluster, err error) {
	defer s.observe("CreateCluster", time.Now(), &err)
	return s.inner.CreateCluster(ctx, c)
}

// GetCluster implements Store.
func (s *instrumented) GetCluster(ctx context.Context, id string) (r0 Cluster, err error) {
	defer s.observe("GetCluster", time.Now(), &err)
	return s.inner.GetCluster(ctx, id)
}

// ListClusters implements Store.
func (s *instrumented) ListClusters(ctx context.Context, f ClusterFilter) (r0 []Cluster, err error) {
	defer s.observe("ListClusters", time.Now(), &err)
	return s.inner.ListClusters(ctx, f)
}

// DeleteCluster implements Store.
func (s *instrumented) DeleteCluster(ctx context.Context, id string) (err error) {
	defer s.observe("DeleteCluster", time.Now(), &err)
	return s.inner.DeleteCluster(ctx, id)
}

// RecordHeartbeat implements Store.
func (s *instrumented) RecordHeartbeat(ctx context.Context, id string, hb Heartbeat) (err error) {
	defer s.observe("RecordHeartbeat", time.Now(), &err)
	return s.inner.RecordHeartbeat(ctx, id, hb)
}

// RecordHeartbeats implements Store.
func (s *instrumented) RecordHeartbeats(ctx context.Context, hbs map[string]Heartbeat) (err error) {
	defer s.observe("RecordHeartbeats", time.Now(), &err)
	return s.inner.RecordHeartbeats(ctx, hbs)
}

// ListAgentKeys implements Store.
func (s *instrumented) ListAgentKeys(ctx context.Context, ids []string) (r0 map[string][]byte, err error) {
	defer s.observe("ListAgentKeys", time.Now(), &err)
	return s.inner.ListAgentKeys(ctx, ids)
}

// RecordAgentStatus implements Store.
func (s *instrumented) RecordAgentStatus(ctx context.Context, id string, st AgentStatus) (err error) {
	defer s.observe("RecordAgentStatus", time.Now(), &err)
	return s.inner.RecordAgentStatus(ctx, id, st)
}

// SetTunnel implements Store.
func (s *instrumented) SetTunnel(ctx context.Context, id string, t Tunnel) (err error) {
	defer s.observe("SetTunnel", time.Now(), &err)
	return s.inner.SetTunnel(ctx, id, t)
}

// RecordConnection implements Store.
func (s *instrumented) RecordConnection(ctx context.Context, id string, t Tunnel, hb Heartbeat) (err error) {
	defer s.observe("RecordConnection", time.Now(), &err)
	return s.inner.RecordConnection(ctx, id, t, hb)
}

// ClearTunnel implements Store.
func (s *instrumented) ClearTunnel(ctx context.Context, id string, t Tunnel) (r0 bool, err error) {
	defer s.observe("ClearTunnel", time.Now(), &err)
	return s.inner.ClearTunnel(ctx, id, t)
}

// CreateJoinToken implements Store.
func (s *instrumented) CreateJoinToken(ctx context.Context, tok JoinToken) (err error) {
	defer s.observe("CreateJoinToken", time.Now(), &err)
	return s.inner.CreateJoinToken(ctx, tok)
}

// RedeemJoinToken implements Store.
func (s *instrumented) RedeemJoinToken(ctx context.Context, hash TokenHash, now time.Time, publicKey []byte) (r0 Cluster, err error) {
	defer s.observe("RedeemJoinToken", time.Now(), &err)
	return s.inner.RedeemJoinToken(ctx, hash, now, publicKey)
}

// CreatePrincipal implements Store.
func (s *instrumented) CreatePrincipal(ctx context.Context, p Principal) (err error) {
	defer s.observe("CreatePrincipal", time.Now(), &err)
	return s.inner.CreatePrincipal(ctx, p)
}

// GetPrincipal implements Store.
func (s *instrumented) GetPrincipal(ctx context.Context, id string) (r0 Principal, err error) {
	defer s.observe("GetPrincipal", time.Now(), &err)
	return s.inner.GetPrincipal(ctx, id)
}

// GetUserByLogin implements Store.
func (s *instrumented) GetUserByLogin(ctx context.Context, loginName string) (r0 Principal, err error) {
	defer s.observe("GetUserByLogin", time.Now(), &err)
	return s.inner.GetUserByLogin(ctx, loginName)
}

// GetServicePrincipalByClientID implements Store.
func (s *instrumented) GetServicePrincipalByClientID(ctx context.Context, clientID string) (r0 Principal, err error) {
	defer s.observe("GetServicePrincipalByClientID", time.Now(), &err)
	return s.inner.GetServicePrincipalByClientID(ctx, clientID)
}

// ListPrincipals implements Store.
func (s *instrumented) ListPrincipals(ctx context.Context, f PrincipalFilter) (r0 []Principal, err error) {
	defer s.observe("ListPrincipals", time.Now(), &err)
	return s.inner.ListPrincipals(ctx, f)
}

// SetDisplayName implements Store.
func (s *instrumented) SetDisplayName(ctx context.Context, id, displayName string) (err error) {
	defer s.observe("SetDisplayName", time.Now(), &err)
	return s.inner.SetDisplayName(ctx, id, displayName)
}

// SetPasswordHash implements Store.
func (s *instrumented) SetPasswordHash(ctx context.Context, id string, hash []byte) (err error) {
	defer s.observe("SetPasswordHash", time.Now(), &err)
	return s.inner.SetPasswordHash(ctx, id, hash)
}

// DeletePrincipal implements Store.
func (s *instrumented) DeletePrincipal(ctx context.Context, id string) (err error) {
	defer s.observe("DeletePrincipal", time.Now(), &err)
	return s.inner.DeletePrincipal(ctx, id)
}

// CreateClientSecret implements Store.
func (s *instrumented) CreateClientSecret(ctx context.Context, sec ClientSecret) (err error) {
	defer s.observe("CreateClientSecret", time.Now(), &err)
	return s.inner.CreateClientSecret(ctx, sec)
}

// ListClientSecrets implements Store.
func (s *instrumented) ListClientSecrets(ctx context.Context, principalID string) (r0 []ClientSecret, err error) {
	defer s.observe("ListClientSecrets", time.Now(), &err)
	return s.inner.ListClientSecrets(ctx, principalID)
}

// DeleteClientSecret implements Store.
func (s *instrumented) DeleteClientSecret(ctx context.Context, principalID, secretID string) (err error) {
	defer s.observe("DeleteClientSecret", time.Now(), &err)
	return s.inner.DeleteClientSecret(ctx, principalID, secretID)
}

// FindClientSecrets implements Store.
func (s *instrumented) FindClientSecrets(ctx context.Context, clientID string, now time.Time) (r0 Principal, r1 []ClientSecret, err error) {
	defer s.observe("FindClientSecrets", time.Now(), &err)
	return s.inner.FindClientSecrets(ctx, clientID, now)
}

// AddMember implements Store.
func (s *instrumented) AddMember(ctx context.Context, groupID, memberID string) (err error) {
	defer s.observe("AddMember", time.Now(), &err)
	return s.inner.AddMember(ctx, groupID, memberID)
}

// RemoveMember implements Store.
func (s *instrumented) RemoveMember(ctx context.Context, groupID, memberID string) (err error) {
	defer s.observe("RemoveMember", time.Now(), &err)
	return s.inner.RemoveMember(ctx, groupID, memberID)
}

// ListMembers implements Store.
func (s *instrumented) ListMembers(ctx context.Context, groupID string) (r0 []Principal, err error) {
	defer s.observe("ListMembers", time.Now(), &err)
	return s.inner.ListMembers(ctx, groupID)
}

// GroupsOf implements Store.
func (s *instrumented) GroupsOf(ctx context.Context, principalID string) (r0 []string, err error) {
	defer s.observe("GroupsOf", time.Now(), &err)
	return s.inner.GroupsOf(ctx, principalID)
}

// CreateRoleAssignment implements Store.
func (s *instrumented) CreateRoleAssignment(ctx context.Context, a RoleAssignment) (err error) {
	defer s.observe("CreateRoleAssignment", time.Now(), &err)
	return s.inner.CreateRoleAssignment(ctx, a)
}

// GetRoleAssignment implements Store.
func (s *instrumented) GetRoleAssignment(ctx context.Context, id string) (r0 RoleAssignment, err error) {
	defer s.observe("GetRoleAssignment", time.Now(), &err)
	return s.inner.GetRoleAssignment(ctx, id)
}

// ListRoleAssignments implements Store.
func (s *instrumented) ListRoleAssignments(ctx context.Context, f AssignmentFilter) (r0 []RoleAssignment, err error) {
	defer s.observe("ListRoleAssignments", time.Now(), &err)
	return s.inner.ListRoleAssignments(ctx, f)
}

// DeleteRoleAssignment implements Store.
func (s *instrumented) DeleteRoleAssignment(ctx context.Context, id string) (err error) {
	defer s.observe("DeleteRoleAssignment", time.Now(), &err)
	return s.inner.DeleteRoleAssignment(ctx, id)
}

// RenewReplica implements Store.
func (s *instrumented) RenewReplica(ctx context.Context, r Replica, now time.Time) (r0 bool, err error) {
	defer s.observe("RenewReplica", time.Now(), &err)
	return s.inner.RenewReplica(ctx, r, now)
}

// ListReplicas implements Store.
func (s *instrumented) ListReplicas(ctx context.Context, now time.Time) (r0 []Replica, err error) {
	defer s.observe("ListReplicas", time.Now(), &err)
	return s.inner.ListReplicas(ctx, now)
}

// RemoveReplica implements Store.
func (s *instrumented) RemoveReplica(ctx context.Context, name string) (r0 []string, err error) {
	defer s.observe("RemoveReplica", time.Now(), &err)
	return s.inner.RemoveReplica(ctx, name)
}

// ExpireReplicas implements Store.
func (s *instrumented) ExpireReplicas(ctx context.Context, now time.Time) (r0 []string, err error) {
	defer s.observe("ExpireReplicas", time.Now(), &err)
	return s.inner.ExpireReplicas(ctx, now)
}

// ListTunnels implements Store.
func (s *instrumented) ListTunnels(ctx context.Context) (r0 map[string]Tunnel, err error) {
	defer s.observe("ListTunnels", time.Now(), &err)
	return s.inner.ListTunnels(ctx)
}

// PutEphemeral implements Store.
func (s *instrumented) PutEphemeral(ctx context.Context, e Ephemeral, now time.Time) (err error) {
	defer s.observe("PutEphemeral", time.Now(), &err)
	return s.inner.PutEphemeral(ctx, e, now)
}

// GetEphemeral implements Store.
func (s *instrumented) GetEphemeral(ctx context.Context, kind, key string, now time.Time) (r0 Ephemeral, err error) {
	defer s.observe("GetEphemeral", time.Now(), &err)
	return s.inner.GetEphemeral(ctx, kind, key, now)
}

// UpdateEphemeral implements Store.
func (s *instrumented) UpdateEphemeral(ctx context.Context, e Ephemeral, now time.Time) (r0 Ephemeral, err error) {
	defer s.observe("UpdateEphemeral", time.Now(), &err)
	return s.inner.UpdateEphemeral(ctx, e, now)
}

// TakeEphemeral implements Store.
func (s *instrumented) TakeEphemeral(ctx context.Context, kind, key string, now time.Time) (r0 Ephemeral, err error) {
	defer s.observe("TakeEphemeral", time.Now(), &err)
	return s.inner.TakeEphemeral(ctx, kind, key, now)
}

// DeleteEphemeral implements Store.
func (s *instrumented) DeleteEphemeral(ctx context.Context, kind, key string) (err error) {
	defer s.observe("DeleteEphemeral", time.Now(), &err)
	return s.inner.DeleteEphemeral(ctx, kind, key)
}

// CountEphemeral implements Store.
func (s *instrumented) CountEphemeral(ctx context.Context, kind string, now time.Time) (r0 int, err error) {
	defer s.observe("CountEphemeral", time.Now(), &err)
	return s.inner.CountEphemeral(ctx, kind, now)
}

// PurgeEphemeral implements Store.
func (s *instrumented) PurgeEphemeral(ctx context.Context, now time.Time) (r0 int, err error) {
	defer s.observe("PurgeEphemeral", time.Now(), &err)
	return s.inner.PurgeEphemeral(ctx, now)
}

// AppendAudit implements Store.
func (s *instrumented) AppendAudit(ctx context.Context, events []audit.Event) (r0 []audit.Event, err error) {
	defer s.observe("AppendAudit", time.Now(), &err)
	return s.inner.AppendAudit(ctx, events)
}

// ListAudit implements Store.
func (s *instrumented) ListAudit(ctx context.Context, f AuditFilter) (r0 []audit.Event, err error) {
	defer s.observe("ListAudit", time.Now(), &err)
	return s.inner.ListAudit(ctx, f)
}
