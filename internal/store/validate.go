package store

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"tether.dev/tether/internal/audit"
)

// Limits on the values the store accepts.
const (
	// MaxNameLen is the longest group or cluster name, as for a Kubernetes
	// DNS label.
	MaxNameLen = 63
	// MaxLocationLen is the longest cluster location.
	MaxLocationLen = 64
	// MaxVersionLen is the longest agent or Kubernetes version.
	MaxVersionLen = 128
	// MaxLastErrorLen is the longest last error an agent status keeps.
	MaxLastErrorLen = 1024
	// MaxReplicaLen is the longest hub replica name (a DNS name).
	MaxReplicaLen = 253
	// MaxPublicKeyLen is the longest agent public key, in bytes.
	MaxPublicKeyLen = 4096
	// MaxReplicaURLLen is the longest URL a replica is reached at.
	MaxReplicaURLLen = 2048
	// MaxEphemeralKeyLen is the longest kind or key of an ephemeral record.
	MaxEphemeralKeyLen = 256
	// MaxEphemeralValueLen is the largest value of an ephemeral record.
	MaxEphemeralValueLen = 64 << 10
)

// invalidError is a validation failure: its message is complete, and it
// matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// accessError is a validation failure reported by package access: it keeps
// that package's message, and matches both ErrInvalid and what err matches
// (access.ErrInvalid).
type accessError struct{ err error }

func (e *accessError) Error() string   { return e.err.Error() }
func (e *accessError) Unwrap() []error { return []error{ErrInvalid, e.err} }

// ValidateName checks a group or cluster name: 1 to MaxNameLen lowercase
// letters, digits and '-', starting and ending with a letter or digit (a
// Kubernetes DNS label). The error matches ErrInvalid.
func ValidateName(s string) error {
	if s == "" {
		return invalid("invalid name: empty")
	}
	if len(s) > MaxNameLen {
		return invalid("invalid name: longer than %d characters", MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return invalid("invalid name %q: use lowercase letters, digits and '-', starting and ending with a letter or digit", s)
		}
	}
	return nil
}

// ValidateLocation checks a cluster location: empty, or free text of at
// most MaxLocationLen bytes without control characters or surrounding
// spaces. The error matches ErrInvalid.
func ValidateLocation(s string) error {
	if err := checkText("location", s, MaxLocationLen); err != nil {
		return err
	}
	if strings.TrimSpace(s) != s {
		return invalid("invalid location %q: leading or trailing space", s)
	}
	return nil
}

// ParseClusterMode parses a cluster mode; the empty string means
// ModeKubernetesRBAC. The error matches ErrInvalid.
func ParseClusterMode(s string) (ClusterMode, error) {
	switch m := ClusterMode(s); m {
	case "":
		return ModeKubernetesRBAC, nil
	case ModeKubernetesRBAC, ModeHubRBAC:
		return m, nil
	}
	if len(s) > MaxNameLen {
		return "", invalid("invalid cluster mode: want %s or %s", ModeKubernetesRBAC, ModeHubRBAC)
	}
	return "", invalid("invalid cluster mode %q: want %s or %s", s, ModeKubernetesRBAC, ModeHubRBAC)
}

const (
	groupsPrefix    = "/groups/"
	clustersInfix   = "/clusters/"
	maxClusterIDLen = len(groupsPrefix) + MaxNameLen + len(clustersInfix) + MaxNameLen
)

// ClusterID returns the ID of the cluster name in group:
// "/groups/{group}/clusters/{name}". It does not validate its arguments.
func ClusterID(group, name string) string {
	return groupsPrefix + group + clustersInfix + name
}

// ParseClusterID splits a cluster ID made by ClusterID into its valid group
// and name. The error matches ErrInvalid.
func ParseClusterID(id string) (group, name string, err error) {
	if len(id) > maxClusterIDLen {
		return "", "", invalid("invalid cluster ID: longer than %d characters", maxClusterIDLen)
	}
	rest, ok := strings.CutPrefix(id, groupsPrefix)
	if ok {
		group, name, ok = strings.Cut(rest, clustersInfix)
	}
	if !ok {
		return "", "", invalid("invalid cluster ID %q: want /groups/{group}/clusters/{name}", id)
	}
	if err := ValidateName(group); err != nil {
		return "", "", fmt.Errorf("cluster ID %q: group: %w", id, err)
	}
	if err := ValidateName(name); err != nil {
		return "", "", fmt.Errorf("cluster ID %q: name: %w", id, err)
	}
	return group, name, nil
}

// Validate checks the fields that CreateCluster stores: Group, Name,
// Location, Mode (empty allowed) and CreatedAt (required).
func (c Cluster) Validate() error {
	if err := ValidateName(c.Group); err != nil {
		return fmt.Errorf("cluster group: %w", err)
	}
	if err := ValidateName(c.Name); err != nil {
		return fmt.Errorf("cluster name: %w", err)
	}
	if err := ValidateLocation(c.Location); err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if _, err := ParseClusterMode(string(c.Mode)); err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	if c.CreatedAt.IsZero() {
		return invalid("cluster %s: creation time is required", c.Name)
	}
	return nil
}

// Validate checks a heartbeat: versions of at most MaxVersionLen bytes of
// text, and a time.
func (hb Heartbeat) Validate() error {
	if err := checkText("agent version", hb.AgentVersion, MaxVersionLen); err != nil {
		return err
	}
	if err := checkText("kubernetes version", hb.KubernetesVersion, MaxVersionLen); err != nil {
		return err
	}
	if hb.At.IsZero() {
		return invalid("heartbeat: time is required")
	}
	return nil
}

// Validate checks an agent status report: versions of at most
// MaxVersionLen bytes of text, a node count of -1 or more, a last error of
// at most MaxLastErrorLen bytes of text, and a time.
func (st AgentStatus) Validate() error {
	if err := checkText("agent version", st.AgentVersion, MaxVersionLen); err != nil {
		return err
	}
	if err := checkText("kubernetes version", st.KubernetesVersion, MaxVersionLen); err != nil {
		return err
	}
	if st.NodeCount < -1 {
		return invalid("agent status: node count %d: want -1 (unknown) or more", st.NodeCount)
	}
	if err := checkText("last error", st.LastError, MaxLastErrorLen); err != nil {
		return err
	}
	if st.ReportedAt.IsZero() {
		return invalid("agent status: report time is required")
	}
	return nil
}

// Validate checks a tunnel holder for SetTunnel and ClearTunnel: a replica
// name of 1 to MaxReplicaLen bytes of text, and a connection time.
func (t Tunnel) Validate() error {
	if t.Replica == "" {
		return invalid("tunnel: replica is required")
	}
	if err := checkText("tunnel replica", t.Replica, MaxReplicaLen); err != nil {
		return err
	}
	if t.ConnectedAt.IsZero() {
		return invalid("tunnel: connection time is required")
	}
	return nil
}

// Validate checks a join token for CreateJoinToken: a non-zero hash, a valid
// cluster ID, and an expiry after the creation time.
func (tok JoinToken) Validate() error {
	if tok.Hash == (TokenHash{}) {
		return invalid("join token: hash is required")
	}
	if _, _, err := ParseClusterID(tok.ClusterID); err != nil {
		return fmt.Errorf("join token: %w", err)
	}
	if tok.CreatedAt.IsZero() || tok.ExpiresAt.IsZero() {
		return invalid("join token: creation and expiry times are required")
	}
	if !tok.ExpiresAt.After(tok.CreatedAt) {
		return invalid("join token: expiry must be after creation")
	}
	return nil
}

// ValidatePublicKey checks an agent's public key: 1 to MaxPublicKeyLen
// bytes. The store does not interpret the key.
func ValidatePublicKey(key []byte) error {
	if len(key) == 0 {
		return invalid("public key is required")
	}
	if len(key) > MaxPublicKeyLen {
		return invalid("public key: longer than %d bytes", MaxPublicKeyLen)
	}
	return nil
}

// ValidateUUID checks an identifier that the caller generates, such as a
// client secret's or a role assignment's ID or a service principal's client
// ID: a UUID in canonical lowercase form (8-4-4-4-12 hexadecimal digits),
// not the nil UUID, so that it compares byte for byte. The error matches
// ErrInvalid.
func ValidateUUID(s string) error {
	const want = "want a UUID in lowercase, such as 3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b"
	if len(s) != 36 {
		if len(s) > 2*36 {
			return invalid("invalid UUID: %s", want)
		}
		return invalid("invalid UUID %+q: %s", s, want)
	}
	zero := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return invalid("invalid UUID %+q: %s", s, want)
			}
		case '0' <= c && c <= '9' || 'a' <= c && c <= 'f':
			zero = zero && c == '0'
		default:
			return invalid("invalid UUID %+q: %s", s, want)
		}
	}
	if zero {
		return invalid("invalid UUID %q: the nil UUID is not an identifier", s)
	}
	return nil
}

// checkText checks that s is at most max bytes of UTF-8 text without
// control characters.
func checkText(what, s string, max int) error {
	if len(s) > max {
		return invalid("invalid %s: longer than %d bytes", what, max)
	}
	if !utf8.ValidString(s) {
		return invalid("invalid %s: not UTF-8", what)
	}
	if strings.ContainsFunc(s, unicode.IsControl) {
		return invalid("invalid %s %q: control character", what, s)
	}
	return nil
}

// Validate checks a replica record: a name as Tunnel.Replica takes it, a
// URL https://HOST[:PORT] of at most MaxReplicaURLLen bytes, and a lease
// end. The error matches ErrInvalid.
func (r Replica) Validate() error {
	if r.Name == "" {
		return invalid("invalid replica: empty name")
	}
	if err := checkText("replica name", r.Name, MaxReplicaLen); err != nil {
		return err
	}
	if !strings.HasPrefix(r.URL, "https://") || len(r.URL) == len("https://") {
		return invalid("invalid replica %s: URL %q is not https://HOST[:PORT]", r.Name, r.URL)
	}
	if err := checkText("replica URL", r.URL, MaxReplicaURLLen); err != nil {
		return err
	}
	if r.ExpiresAt.IsZero() {
		return invalid("invalid replica %s: no lease expiry", r.Name)
	}
	return nil
}

// Validate checks an ephemeral record for PutEphemeral and
// UpdateEphemeral: a kind and key of 1 to MaxEphemeralKeyLen bytes of text,
// a value of at most MaxEphemeralValueLen bytes, and an expiry. The error
// matches ErrInvalid.
func (e Ephemeral) Validate() error {
	for _, f := range []struct{ what, v string }{{"ephemeral kind", e.Kind}, {"ephemeral key", e.Key}} {
		if f.v == "" {
			return invalid("invalid %s: empty", f.what)
		}
		if err := checkText(f.what, f.v, MaxEphemeralKeyLen); err != nil {
			return err
		}
	}
	if len(e.Value) > MaxEphemeralValueLen {
		return invalid("invalid ephemeral value: %d bytes, more than %d", len(e.Value), MaxEphemeralValueLen)
	}
	if e.ExpiresAt.IsZero() {
		return invalid("invalid ephemeral record %s/%s: no expiry", e.Kind, e.Key)
	}
	return nil
}

// MaxAuditFieldLen is the longest text field of an audit event.
const MaxAuditFieldLen = 1024

// ValidateAuditEvent checks an event for AppendAudit: a time that its hash
// covers (audit.HashableTime, once truncated to the microsecond), a type
// and a decision, every text field at most MaxAuditFieldLen bytes of UTF-8
// without control characters, and no negative counts. The error matches
// ErrInvalid.
func ValidateAuditEvent(e audit.Event) error {
	if e.Time.IsZero() {
		return invalid("invalid audit event: no time")
	}
	// The time as AppendAudit stores and hashes it.
	if !audit.HashableTime(e.Time.Truncate(time.Microsecond)) {
		return invalid("invalid audit event: time %s is outside 1677-09-21 to 2262-04-11", e.Time.UTC().Format(time.RFC3339))
	}
	if e.Type == "" || e.Decision == "" {
		return invalid("invalid audit event: type and decision are required")
	}
	for _, f := range []struct{ what, v string }{
		{"type", e.Type}, {"request ID", e.RequestID}, {"replica", e.Replica}, {"principal ID", e.PrincipalID},
		{"principal type", e.PrincipalType}, {"principal name", e.PrincipalName}, {"source address", e.SourceAddr},
		{"cluster", e.Cluster}, {"authorization mode", e.AuthMode}, {"decision", e.Decision}, {"reason", e.Reason},
		{"verb", e.Verb}, {"API group", e.APIGroup}, {"resource", e.Resource}, {"subresource", e.Subresource},
		{"namespace", e.Namespace}, {"name", e.Name}, {"path", e.Path},
	} {
		if err := checkText("audit event "+f.what, f.v, MaxAuditFieldLen); err != nil {
			return err
		}
	}
	if e.Status < 0 || e.BytesIn < 0 || e.BytesOut < 0 || e.Duration < 0 {
		return invalid("invalid audit event: negative status, byte count or duration")
	}
	return nil
}

// AgentKeysFor checks the cluster IDs a ListAgentKeys is given and returns
// the empty map the backend fills.
func AgentKeysFor(ids []string) (map[string][]byte, error) {
	for _, id := range ids {
		if _, _, err := ParseClusterID(id); err != nil {
			return nil, fmt.Errorf("list agent keys: %w", err)
		}
	}
	return make(map[string][]byte, len(ids)), nil
}

// ValidateHeartbeats checks the IDs and heartbeats of RecordHeartbeats.
func ValidateHeartbeats(hbs map[string]Heartbeat) error {
	for id, hb := range hbs {
		if _, _, err := ParseClusterID(id); err != nil {
			return fmt.Errorf("record heartbeats: %w", err)
		}
		if err := hb.Validate(); err != nil {
			return fmt.Errorf("record heartbeats: cluster %s: %w", id, err)
		}
	}
	return nil
}

// ValidateConnection checks the arguments of RecordConnection.
func ValidateConnection(id string, t Tunnel, hb Heartbeat) error {
	if _, _, err := ParseClusterID(id); err != nil {
		return fmt.Errorf("record connection: %w", err)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("record connection of cluster %s: %w", id, err)
	}
	if err := hb.Validate(); err != nil {
		return fmt.Errorf("record connection of cluster %s: %w", id, err)
	}
	return nil
}
