// Package store defines the hub's persistent state: the domain types, the
// Store interface that every backend implements, and the errors callers
// match with errors.Is.
//
// Two backends implement Store: sqlite (pure Go, the embedded default for a
// single hub replica) and, later, postgres (shared by several replicas).
// Package storetest holds the conformance suite both run.
//
// Conventions shared by every method and backend:
//
//   - Every method takes a context and honours its cancellation.
//   - The clock is the caller's: a method that records a time takes it as an
//     argument or a field, and never reads the wall clock.
//   - Times are kept in UTC with microsecond precision: a time read back equals
//     the one written, t.Truncate(time.Microsecond), in time.UTC. The zero
//     time.Time means "not set".
//   - Inputs are validated; a rejected input wraps ErrInvalid.
//   - Values returned never alias the store's memory or the caller's.
package store

import (
	"context"
	"crypto/sha256"
	"errors"
	"time"

	"tether.dev/tether/internal/audit"
)

// Errors that callers match with errors.Is. Methods wrap them with context.
var (
	// ErrNotFound: the entity named by the call does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: an entity with the same identity already exists.
	ErrConflict = errors.New("already exists")
	// ErrInvalid: an argument failed validation (a malformed ID or name, a
	// missing time, a value too long).
	ErrInvalid = errors.New("invalid argument")

	// ErrTokenInvalid: no join token has that hash (never issued, or its
	// cluster was deleted).
	ErrTokenInvalid = errors.New("join token is not valid")
	// ErrTokenUsed: the join token was already redeemed.
	ErrTokenUsed = errors.New("join token was already used")
	// ErrTokenExpired: the join token's expiry has passed.
	ErrTokenExpired = errors.New("join token has expired")

	// ErrCycle: the group membership would make a group its own member,
	// directly or through nested groups.
	ErrCycle = errors.New("group membership would make a cycle")

	// ErrUnavailable: the store could not be reached (its server is down,
	// restarting or unreachable), and the same call may succeed later. A
	// change failed this way was not made, unless the connection was lost
	// while committing it: then it may have been. Backends wrap connection failures with it, so callers
	// can answer 503 and retry rather than report a bug.
	ErrUnavailable = errors.New("store is unavailable")
)

// Store is the hub's state. Implementations are safe for concurrent use.
type Store interface {
	// Clusters.

	// CreateCluster registers a cluster from c's Group, Name, Location, Mode
	// (empty means ModeKubernetesRBAC) and CreatedAt (required). Its ID is
	// derived from Group and Name; c's ID, Agent and Tunnel are ignored and
	// start empty. It returns the cluster as stored, or ErrConflict if a
	// cluster with that ID exists.
	CreateCluster(ctx context.Context, c Cluster) (Cluster, error)
	// GetCluster returns the cluster with the given ID, or ErrNotFound.
	GetCluster(ctx context.Context, id string) (Cluster, error)
	// ListClusters returns the clusters that match f, sorted by group and
	// then by name (byte-wise, as Go compares strings). The result may be
	// nil when nothing matches.
	ListClusters(ctx context.Context, f ClusterFilter) ([]Cluster, error)
	// DeleteCluster removes the cluster with its agent's key (the agent is
	// refused from then on), its status, all its join tokens and the role
	// assignments at the cluster and its namespaces, in one change; or it
	// returns ErrNotFound.
	DeleteCluster(ctx context.Context, id string) error
	// RecordHeartbeat stores the versions the cluster's agent reported and
	// sets its LastSeenAt to hb.At. The last call wins, whatever its time.
	// It returns ErrNotFound if the cluster does not exist.
	RecordHeartbeat(ctx context.Context, id string, hb Heartbeat) error
	// RecordHeartbeats is RecordHeartbeat for many clusters in one change,
	// hbs by cluster ID: a hub records the heartbeats of all its tunnels
	// at once. A cluster that does not exist (deleted meanwhile) is skipped,
	// not an error. Every ID and heartbeat is validated first: if one is
	// invalid, nothing is recorded.
	RecordHeartbeats(ctx context.Context, hbs map[string]Heartbeat) error
	// ListAgentKeys returns the agent key (Agent.PublicKey) of each of the
	// clusters ids that exists, by cluster ID, read at one instant: nil for
	// a cluster whose agent has not enrolled; a cluster that does not exist
	// is absent. A hub checks the keys of all its tunnels at once with it.
	ListAgentKeys(ctx context.Context, ids []string) (map[string][]byte, error)
	// RecordAgentStatus stores st as the cluster's latest agent status
	// report (Agent.Status), replacing the previous one whole: the last call
	// wins, whatever its time. It changes nothing else (the versions and
	// LastSeenAt that RecordHeartbeat keeps stay as they are). It returns
	// ErrNotFound if the cluster does not exist.
	RecordAgentStatus(ctx context.Context, id string, st AgentStatus) error
	// SetTunnel records that t.Replica holds the cluster's tunnel since
	// t.ConnectedAt, replacing any previous holder (the newest connection
	// wins). It returns ErrNotFound if the cluster does not exist.
	SetTunnel(ctx context.Context, id string, t Tunnel) error
	// RecordConnection is SetTunnel(ctx, id, t) and RecordHeartbeat(ctx, id,
	// hb) in one change: what a hub records when an agent connects. It
	// returns ErrNotFound if the cluster does not exist, and changes
	// nothing if t or hb is invalid.
	RecordConnection(ctx context.Context, id string, t Tunnel, hb Heartbeat) error
	// ClearTunnel clears the cluster's tunnel holder only if it is still t
	// (same Replica and ConnectedAt), so a replica whose connection was
	// superseded, by another replica or by a newer connection to itself,
	// cannot clear the newer one. It reports whether it cleared, and returns
	// ErrNotFound if the cluster does not exist.
	ClearTunnel(ctx context.Context, id string, t Tunnel) (bool, error)

	// Join tokens and enrollment.

	// CreateJoinToken stores a new, unused one-time enrollment token for
	// tok.ClusterID. Older unused tokens of the same cluster stay
	// valid until they expire or are redeemed. It returns ErrNotFound if the
	// cluster does not exist and ErrConflict if the hash is already stored.
	CreateJoinToken(ctx context.Context, tok JoinToken) error
	// RedeemJoinToken enrolls an agent, atomically: it checks that the token
	// exists (else ErrTokenInvalid), is unused (else ErrTokenUsed) and that
	// now is before its expiry (else ErrTokenExpired), in that order; then it
	// marks the token used at now and sets the cluster's Agent.PublicKey to
	// publicKey and Agent.EnrolledAt to now, replacing the key of an earlier
	// enrollment, and returns the updated cluster. Of concurrent redemptions
	// of one token exactly one succeeds; a failed redemption changes nothing.
	RedeemJoinToken(ctx context.Context, hash TokenHash, now time.Time, publicKey []byte) (Cluster, error)

	// Principals of the embedded directory. See Principal for when a read
	// returns credentials.

	// CreatePrincipal stores p (see Principal.Validate). It returns
	// ErrConflict if a principal has p's ID, if a user has p's login name
	// ignoring case, or if a service principal has p's client ID; of
	// concurrent creations that conflict, exactly one succeeds.
	CreatePrincipal(ctx context.Context, p Principal) error
	// GetPrincipal returns the principal with the given object ID, or
	// ErrNotFound.
	GetPrincipal(ctx context.Context, id string) (Principal, error)
	// GetUserByLogin returns the user whose login name equals loginName
	// ignoring case (see FoldLoginName), with its PasswordHash: the sign-in
	// lookup. It returns ErrNotFound if there is none.
	GetUserByLogin(ctx context.Context, loginName string) (Principal, error)
	// GetServicePrincipalByClientID returns the service principal with the
	// client ID, or ErrNotFound.
	GetServicePrincipalByClientID(ctx context.Context, clientID string) (Principal, error)
	// ListPrincipals returns the principals that match f, sorted by display
	// name and then by ID (byte-wise, as Go compares strings).
	ListPrincipals(ctx context.Context, f PrincipalFilter) ([]Principal, error)
	// SetDisplayName renames the principal, or returns ErrNotFound.
	SetDisplayName(ctx context.Context, id, displayName string) error
	// SetPasswordHash replaces the user's password hash; an empty hash
	// removes the password. It returns ErrNotFound if there is no principal
	// with that ID, and ErrInvalid if it is not a user. The last call wins.
	SetPasswordHash(ctx context.Context, id string, hash []byte) error
	// DeletePrincipal removes the principal with its group memberships (as
	// a member, and as a group its members' memberships), its client
	// secrets, and the role assignments that name its ID, in one change.
	// It returns ErrNotFound, changing nothing, if there is no such
	// principal, even if assignments name the ID.
	DeletePrincipal(ctx context.Context, id string) error

	// Client secrets of service principals. See ClientSecret for when a
	// read returns hashes.

	// CreateClientSecret stores sec (see ClientSecret.Validate) for the
	// service principal sec.PrincipalID. It returns ErrNotFound if there is
	// no principal with that ID, ErrInvalid if it is not a service
	// principal, and ErrConflict if a secret has sec's ID.
	CreateClientSecret(ctx context.Context, sec ClientSecret) error
	// ListClientSecrets returns the service principal's secrets, expired
	// ones included, without their hashes, sorted by creation time and
	// then by ID. It returns ErrNotFound if there is no principal with that
	// ID and ErrInvalid if it is not a service principal.
	ListClientSecrets(ctx context.Context, principalID string) ([]ClientSecret, error)
	// DeleteClientSecret removes the service principal's secret, or returns
	// ErrNotFound if that principal has no secret with that ID.
	DeleteClientSecret(ctx context.Context, principalID, secretID string) error
	// FindClientSecrets is the sign-in lookup of the client credentials
	// grant: it returns the service principal with the client ID and its
	// secrets that are unexpired at now (now is before ExpiresAt), with
	// their hashes, sorted as ListClientSecrets sorts; the caller compares
	// the presented secret's hash with each in constant time. It returns
	// ErrNotFound if no service principal has the client ID.
	FindClientSecrets(ctx context.Context, clientID string, now time.Time) (Principal, []ClientSecret, error)

	// Group memberships. A member is a user, a service principal or a
	// group, of the embedded directory.

	// AddMember makes memberID a direct member of the group groupID. It
	// returns ErrNotFound if either principal does not exist, ErrInvalid if
	// groupID is not a group, ErrConflict if memberID is already a direct
	// member, and ErrCycle if memberID is groupID or a group that contains
	// groupID, directly or through nested groups. The check and the change
	// are one: concurrent additions never make a cycle.
	AddMember(ctx context.Context, groupID, memberID string) error
	// RemoveMember removes memberID from the group's direct members, or
	// returns ErrNotFound if it is not one.
	RemoveMember(ctx context.Context, groupID, memberID string) error
	// ListMembers returns the group's direct members, sorted as
	// ListPrincipals sorts. It returns ErrNotFound if there is no principal
	// with that ID and ErrInvalid if it is not a group.
	ListMembers(ctx context.Context, groupID string) ([]Principal, error)
	// GroupsOf returns the object IDs of every group that the principal is
	// a member of, directly or through nested groups, sorted byte-wise,
	// each once: the groups a token or an impersonation carries. A principal
	// that is in no group, or is not in the directory, has none.
	GroupsOf(ctx context.Context, principalID string) ([]string, error)

	// Role assignments.

	// CreateRoleAssignment stores a (see RoleAssignment.Validate). If the
	// principal it names is in the directory, a.PrincipalType must be its
	// type (else ErrInvalid); a principal of another issuer is taken as
	// given. It returns ErrConflict if an assignment has a's ID, or the
	// same principal, role and scope; of concurrent creations that
	// conflict, exactly one succeeds.
	CreateRoleAssignment(ctx context.Context, a RoleAssignment) error
	// GetRoleAssignment returns the assignment with the given ID, or
	// ErrNotFound.
	GetRoleAssignment(ctx context.Context, id string) (RoleAssignment, error)
	// ListRoleAssignments returns the assignments that match f, sorted by
	// scope, principal ID, role ID and ID (byte-wise).
	ListRoleAssignments(ctx context.Context, f AssignmentFilter) ([]RoleAssignment, error)
	// DeleteRoleAssignment removes the assignment, or returns ErrNotFound.
	DeleteRoleAssignment(ctx context.Context, id string) error

	// Hub replicas and the tunnels they hold (the routes between replicas).

	// RenewReplica records that the replica r.Name is alive and that its
	// peers reach it at r.URL until r.ExpiresAt (its lease), creating its
	// record or replacing it whole. It reports whether a record of that name
	// existed with its lease unexpired at now; false tells a replica that its
	// peers may have expired it (and cleared its tunnels), so it records its
	// tunnels again.
	RenewReplica(ctx context.Context, r Replica, now time.Time) (bool, error)
	// ListReplicas returns the replicas whose lease is unexpired at now (now
	// is before ExpiresAt), sorted by name.
	ListReplicas(ctx context.Context, now time.Time) ([]Replica, error)
	// RemoveReplica deletes the replica's record and clears every tunnel it
	// holds (as ClearTunnel would), in one change: a draining replica's
	// last word. It returns the IDs of the clusters whose tunnels it
	// cleared, sorted; removing a replica that has no record is not an
	// error.
	RemoveReplica(ctx context.Context, name string) ([]string, error)
	// ExpireReplicas removes every replica whose lease has expired at now
	// (ExpiresAt is not after now) and clears the tunnels they hold, in one
	// change. It returns the names removed, sorted.
	ExpireReplicas(ctx context.Context, now time.Time) ([]string, error)
	// ListTunnels returns the holder of every cluster's tunnel that is held,
	// by cluster ID. The result may be nil when none is.
	ListTunnels(ctx context.Context) (map[string]Tunnel, error)

	// Ephemeral records: short-lived state that every replica must see (the
	// embedded issuer's pending device codes, authorization codes and
	// sign-in failure counts). A record is an opaque value under a kind and
	// a key, with an expiry; a record whose expiry has passed (ExpiresAt is
	// not after now) reads as absent everywhere, and may be replaced.

	// PutEphemeral stores e (see Ephemeral.Validate) as a new record with
	// Version 1. It returns ErrConflict if an unexpired record has e's kind
	// and key at now; an expired one is replaced. Of concurrent puts of one
	// kind and key, exactly one succeeds.
	PutEphemeral(ctx context.Context, e Ephemeral, now time.Time) error
	// GetEphemeral returns the record, or ErrNotFound if there is none
	// unexpired at now.
	GetEphemeral(ctx context.Context, kind, key string, now time.Time) (Ephemeral, error)
	// UpdateEphemeral replaces the value and expiry of the record of e's
	// kind and key if its version is still e.Version (compare and swap),
	// and increments its version; it returns the record as stored. It
	// returns ErrNotFound if there is no record unexpired at now, and
	// ErrConflict, changing nothing, if the version differs (another
	// replica changed it first: read it again and retry).
	UpdateEphemeral(ctx context.Context, e Ephemeral, now time.Time) (Ephemeral, error)
	// TakeEphemeral deletes the record and returns it, atomically: of
	// concurrent takes of one record exactly one gets it. It returns
	// ErrNotFound if there is no record unexpired at now (deleting an
	// expired one).
	TakeEphemeral(ctx context.Context, kind, key string, now time.Time) (Ephemeral, error)
	// DeleteEphemeral deletes the record whatever its expiry; deleting a
	// record that does not exist is not an error.
	DeleteEphemeral(ctx context.Context, kind, key string) error
	// CountEphemeral returns how many records of kind are unexpired at now.
	CountEphemeral(ctx context.Context, kind string, now time.Time) (int, error)
	// PurgeEphemeral deletes every record expired at now and returns how
	// many it deleted.
	PurgeEphemeral(ctx context.Context, now time.Time) (int, error)

	// Audit events (package audit): one chain per hub, shared by its
	// replicas.

	// AppendAudit appends events to the chain, in order, atomically: each
	// gets the next Seq, the previous event's Hash as PrevHash (all zero
	// before the first event) and Hash = ComputeHash(PrevHash); whatever
	// those fields held is ignored. Concurrent appends, from any number of
	// replicas, form one unbroken chain. Each event is validated (see
	// ValidateAuditEvent); if one is invalid nothing is appended. It returns
	// the events as stored.
	AppendAudit(ctx context.Context, events []audit.Event) ([]audit.Event, error)
	// ListAudit returns the events that match f, in Seq order, at most
	// f.Limit of them.
	ListAudit(ctx context.Context, f AuditFilter) ([]audit.Event, error)

	// Close releases the store's resources. It is idempotent; other methods
	// fail after it.
	Close() error
}

// AuditFilter selects audit events for ListAudit. The zero value selects
// every event, up to DefaultAuditLimit.
type AuditFilter struct {
	// AfterSeq selects events after that one (for paging, and verifying the
	// chain in parts).
	AfterSeq int64
	// Since and Until select events with Since <= Time < Until; the zero
	// time leaves that side open.
	Since, Until time.Time
	// Each of these, when set, selects events whose field equals it; text
	// no event could hold (control characters, not UTF-8, too long) is
	// ErrInvalid.
	Cluster, PrincipalID, Verb, Decision, Type string
	// Limit is the most events returned: 0 means DefaultAuditLimit, and it
	// may not exceed MaxAuditLimit.
	Limit int
}

// Limits of ListAudit.
const (
	DefaultAuditLimit = 1000
	MaxAuditLimit     = 10000
)

// Watcher is implemented by stores that tell their users of changes made
// by others, so that several hub replicas keep their routes in memory
// without polling. Both backends implement it: PostgreSQL with
// LISTEN/NOTIFY across processes, SQLite within its one process.
type Watcher interface {
	// WatchClusters calls fn with the ID of each cluster whose tunnel
	// holder or agent key changed, or which was deleted, after the change
	// is committed, by whichever replica made it; and with "" whenever
	// changes may have been missed (at the start, and after the watch
	// lost its connection to the store and got it back): then the caller
	// must assume anything changed and read again. Calls to fn are
	// sequential, in the order of the changes; fn must not block for long.
	// WatchClusters returns nil when ctx ends; while the store is
	// unreachable it keeps trying to reconnect.
	WatchClusters(ctx context.Context, fn func(clusterID string)) error
}

// Replica is a hub process sharing the store with others (RenewReplica).
type Replica struct {
	// Name is the replica's name, unique among replicas (the pod name):
	// what Tunnel.Replica refers to. See Replica.Validate.
	Name string
	// URL is where the other replicas reach this one, https://HOST:PORT.
	URL string
	// ExpiresAt is the end of the replica's lease: unless renewed, it is
	// taken for dead from then on. Required.
	ExpiresAt time.Time
}

// Ephemeral is a short-lived record shared by the hub's replicas (see the
// Ephemeral methods of Store).
type Ephemeral struct {
	// Kind names the record's use, such as "device-code"; Key identifies
	// it within Kind. Both are 1 to MaxEphemeralKeyLen bytes.
	Kind string
	Key  string
	// Value is opaque to the store, at most MaxEphemeralValueLen bytes.
	Value []byte
	// Version counts the record's changes: 1 when put, incremented by each
	// UpdateEphemeral. Set by the store.
	Version int64
	// ExpiresAt is the first instant the record is no longer valid.
	// Required.
	ExpiresAt time.Time
}

// ClusterMode says who authorizes requests to a cluster.
type ClusterMode string

const (
	// ModeKubernetesRBAC: the hub checks only that the caller may connect;
	// the cluster's API server decides against its own bindings.
	ModeKubernetesRBAC ClusterMode = "kubernetes-rbac"
	// ModeHubRBAC: the hub's role assignments decide.
	ModeHubRBAC ClusterMode = "hub-rbac"
)

// Cluster is a Kubernetes cluster registered with the hub.
type Cluster struct {
	// ID is the cluster's path, "/groups/{Group}/clusters/{Name}" (see
	// ClusterID). Set by the store.
	ID string
	// Group and Name are validated by ValidateName.
	Group string
	Name  string
	// Location is a free-text label such as "eastus2"; may be empty. See
	// ValidateLocation.
	Location string
	// Mode says who authorizes requests to the cluster.
	Mode      ClusterMode
	CreatedAt time.Time
	// Agent is what the hub knows of the cluster's agent.
	Agent Agent
	// Tunnel says which hub replica holds the agent's tunnel.
	Tunnel Tunnel
}

// Enrolled reports whether an agent has enrolled for the cluster.
func (c Cluster) Enrolled() bool { return len(c.Agent.PublicKey) > 0 }

// Agent is the state of a cluster's agent.
type Agent struct {
	// PublicKey is the key the agent proves on every connection; nil until
	// the agent enrolls (RedeemJoinToken).
	PublicKey []byte
	// EnrolledAt is when the current PublicKey was enrolled.
	EnrolledAt time.Time
	// Version and KubernetesVersion are as last reported (RecordHeartbeat).
	Version           string
	KubernetesVersion string
	// LastSeenAt is the time of the last heartbeat.
	LastSeenAt time.Time
	// Status is the agent's latest status report (RecordAgentStatus); the
	// zero value until the agent first reports.
	Status AgentStatus
}

// AgentStatus is what an agent last reported about itself and its cluster
// (RecordAgentStatus).
type AgentStatus struct {
	// AgentVersion and KubernetesVersion are free text, at most
	// MaxVersionLen bytes; empty is allowed.
	AgentVersion      string
	KubernetesVersion string
	// NodeCount is the number of nodes in the cluster, or -1 when the agent
	// could not tell.
	NodeCount int
	// LastError is the agent's most recent problem, empty when all is well:
	// text of at most MaxLastErrorLen bytes, on one line.
	LastError string
	// ReportedAt is when the hub received the report; required.
	ReportedAt time.Time
}

// Tunnel names the hub replica that holds a cluster's tunnel. The zero Tunnel
// means no replica does.
type Tunnel struct {
	// Replica is the holding replica's name; empty when none.
	Replica string
	// ConnectedAt is when the agent's connection to Replica was established.
	ConnectedAt time.Time
}

// ClusterFilter selects clusters for ListClusters. The zero value selects all.
type ClusterFilter struct {
	// Group, when set, selects only the clusters of that group.
	Group string
}

// Heartbeat is an agent's periodic report (RecordHeartbeat).
type Heartbeat struct {
	// AgentVersion and KubernetesVersion are free text, at most
	// MaxVersionLen bytes; empty is allowed.
	AgentVersion      string
	KubernetesVersion string
	// At is when the hub received the heartbeat; required.
	At time.Time
}

// TokenHash is the SHA-256 hash of a join token. The store never holds the
// token itself.
type TokenHash [sha256.Size]byte

// JoinToken is a one-time token that enrolls an agent for one cluster. The
// store also records when it was redeemed.
type JoinToken struct {
	Hash      TokenHash
	ClusterID string
	CreatedAt time.Time
	// ExpiresAt is the first instant at which the token is no longer valid;
	// it must be after CreatedAt.
	ExpiresAt time.Time
}
