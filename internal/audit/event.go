// Package audit defines the hub's audit events and their tamper-evident
// chain: every event carries the SHA-256 of its own content and of the
// event before it, so an edited, inserted or deleted event breaks the chain
// from there on (Verify). The store assigns each event its place in the
// chain (store.Store's AppendAudit); this package does no I/O.
//
// Events never hold tokens, secrets, request bodies or Secret data: only
// who, from where, what (the Kubernetes request's attributes), the decision
// and the outcome.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Types of events.
const (
	// TypeRequest is one request through the gateway (not upgraded).
	TypeRequest = "request"
	// TypeSessionStart and TypeSessionEnd bracket an upgraded request
	// (exec, attach, port-forward): the start when the upgrade is answered,
	// the end with bytes and duration when it closes.
	TypeSessionStart = "session.start"
	TypeSessionEnd   = "session.end"
	// TypeSignIn is a token issued by the embedded issuer, or refused.
	TypeSignIn = "signin"
	// TypeEnroll is an agent enrollment with a join token, or its refusal.
	TypeEnroll = "enroll"
	// TypeChange is a change through the admin API (clusters, join tokens,
	// role assignments, the directory); Verb and Resource say which.
	TypeChange = "change"
)

// Decisions.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
	// DecisionError: the hub could not decide (its store was down, the
	// tunnel failed before an answer).
	DecisionError = "error"
)

// HashSize is the size of an event's hashes.
const HashSize = sha256.Size

// Event is one audit record.
type Event struct {
	// Seq is the event's place in the hub's chain, 1, 2, ...; set by the
	// store.
	Seq int64 `json:"seq"`
	// Time is when the event happened (for a request, when it arrived).
	Time time.Time `json:"time"`
	// Type is one of the Type constants.
	Type string `json:"type"`
	// RequestID matches the hub's logs (and the X-Request-Id it answered).
	RequestID string `json:"requestID,omitempty"`
	// Replica is the hub replica that recorded the event.
	Replica string `json:"replica,omitempty"`

	// The principal: object ID, type (user, servicePrincipal, group,
	// serviceAccount, agent, admin) and display name; empty when unknown
	// (a refused token).
	PrincipalID   string `json:"principalID,omitempty"`
	PrincipalType string `json:"principalType,omitempty"`
	PrincipalName string `json:"principalName,omitempty"`
	// SourceAddr is the client's address (IP:port).
	SourceAddr string `json:"sourceAddr,omitempty"`

	// Cluster is the cluster's ID, when the event concerns one.
	Cluster string `json:"cluster,omitempty"`
	// AuthMode is how the request was authorized: kubernetes-rbac,
	// hub-rbac, or token (a service-account token the API server judges).
	AuthMode string `json:"authMode,omitempty"`
	// Decision is allow, deny or error; Reason says why: the role that
	// allowed it, or what was wrong.
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`

	// The request's attributes, as Kubernetes authorization sees them.
	Verb        string `json:"verb,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	// Path is the request path for non-resource requests (/version, /healthz).
	Path string `json:"path,omitempty"`

	// Status is the HTTP status answered (0 for a session start).
	Status int `json:"status,omitempty"`
	// BytesIn and BytesOut count the body bytes from and to the client.
	BytesIn  int64 `json:"bytesIn,omitempty"`
	BytesOut int64 `json:"bytesOut,omitempty"`
	// Duration is how long the request or session took.
	Duration time.Duration `json:"duration,omitempty"`

	// PrevHash is the previous event's Hash (all zero for the first);
	// Hash is ComputeHash(PrevHash). Set by the store.
	PrevHash []byte `json:"prevHash,omitempty"`
	Hash     []byte `json:"hash,omitempty"`
}

// ComputeHash returns the event's hash chained to prev: SHA-256 over prev
// and an unambiguous encoding of every field but the hashes (each string
// with its length, integers fixed-width, the time in UTC nanoseconds).
func (e Event) ComputeHash(prev []byte) []byte {
	h := sha256.New()
	var n [8]byte
	putInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	putString := func(s string) {
		putInt(int64(len(s)))
		h.Write([]byte(s))
	}
	h.Write([]byte("tether-audit-v1"))
	putInt(int64(len(prev)))
	h.Write(prev)
	putInt(e.Seq)
	putInt(e.Time.UTC().UnixNano())
	for _, s := range []string{e.Type, e.RequestID, e.Replica, e.PrincipalID, e.PrincipalType, e.PrincipalName,
		e.SourceAddr, e.Cluster, e.AuthMode, e.Decision, e.Reason,
		e.Verb, e.APIGroup, e.Resource, e.Subresource, e.Namespace, e.Name, e.Path} {
		putString(s)
	}
	putInt(int64(e.Status))
	putInt(e.BytesIn)
	putInt(e.BytesOut)
	putInt(int64(e.Duration))
	return h.Sum(nil)
}

// HashableTime reports whether ComputeHash covers t exactly: whether its
// nanoseconds since the Unix epoch fit in an int64 (from 1677-09-21 to
// 2262-04-11). Outside that range, times 2^64 ns apart hash alike.
func HashableTime(t time.Time) bool {
	return time.Unix(0, t.UnixNano()).Equal(t)
}

// ErrBroken is what Verify's errors match.
var ErrBroken = errors.New("audit chain is broken")

// Verify checks that events (in Seq order) form an unbroken chain that
// continues from the event before the first, whose hash is prev (all zero,
// or nil, before event 1): consecutive Seq, each PrevHash the previous
// Hash, each Hash recomputed over a time that it covers (HashableTime).
// The error says where the chain breaks and matches ErrBroken.
func Verify(events []Event, prev []byte) error {
	if len(prev) == 0 {
		prev = make([]byte, HashSize)
	}
	for i, e := range events {
		if i > 0 {
			switch last := events[i-1].Seq; {
			case e.Seq <= last:
				return fmt.Errorf("%w: event %d follows event %d: out of order or repeated", ErrBroken, e.Seq, last)
			case e.Seq != last+1:
				return fmt.Errorf("%w: event %d follows event %d: %d event(s) missing", ErrBroken, e.Seq, last, e.Seq-last-1)
			}
		}
		if !bytes.Equal(e.PrevHash, prev) {
			return fmt.Errorf("%w at event %d: it does not follow the event before it (deleted, inserted or reordered events)", ErrBroken, e.Seq)
		}
		if !HashableTime(e.Time) || !bytes.Equal(e.Hash, e.ComputeHash(prev)) {
			return fmt.Errorf("%w at event %d: its content does not match its hash (edited)", ErrBroken, e.Seq)
		}
		prev = e.Hash
	}
	return nil
}
