package access

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid is matched (errors.Is) by every error about a malformed scope,
// object ID or assignment. Its message says what to change.
var ErrInvalid = errors.New("invalid")

// invalidError is a validation failure: its message is complete, and it
// matches ErrInvalid.
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return e.msg }
func (e *invalidError) Unwrap() error { return ErrInvalid }

func invalid(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

// Level is how deep a scope is. The zero Level belongs to the zero Scope,
// which is not a scope at all.
type Level int

// Scope levels, outermost first.
const (
	LevelRoot      Level = iota + 1 // "/": every group, cluster and namespace
	LevelGroup                      // /groups/{group}
	LevelCluster                    // /groups/{group}/clusters/{cluster}
	LevelNamespace                  // /groups/{group}/clusters/{cluster}/namespaces/{namespace}
)

// String returns "root", "group", "cluster" or "namespace".
func (l Level) String() string {
	switch l {
	case LevelRoot:
		return "root"
	case LevelGroup:
		return "group"
	case LevelCluster:
		return "cluster"
	case LevelNamespace:
		return "namespace"
	}
	return fmt.Sprintf("Level(%d)", int(l))
}

// MaxNameLen is the longest group, cluster or namespace name: a Kubernetes
// DNS label, as namespace names are.
const MaxNameLen = 63

const (
	groupsPrefix     = "/groups/"
	clustersInfix    = "/clusters/"
	namespacesInfix  = "/namespaces/"
	maxScopeLen      = len(groupsPrefix) + len(clustersInfix) + len(namespacesInfix) + 3*MaxNameLen
	scopeFormatsHint = "want /, /groups/{group}, /groups/{group}/clusters/{cluster} or /groups/{group}/clusters/{cluster}/namespaces/{namespace}"
)

// Scope is a parsed, valid scope. Only ParseScope makes non-zero Scopes, so
// a Scope's names are always valid; the zero Scope is no scope and contains
// nothing. Scopes are comparable with ==.
type Scope struct {
	level                     Level
	group, cluster, namespace string
}

// ParseScope parses a scope path:
//
//	/
//	/groups/{group}
//	/groups/{group}/clusters/{cluster}
//	/groups/{group}/clusters/{cluster}/namespaces/{namespace}
//
// Each name is 1 to MaxNameLen lowercase letters, digits and '-', starting
// and ending with a letter or digit (a Kubernetes DNS label, the rule for
// namespace names). The parser is strict: no trailing slash, no empty, "." or
// ".." segments, no uppercase, no escapes; a valid scope's String is the
// input again. The error matches ErrInvalid.
func ParseScope(s string) (Scope, error) {
	if len(s) > maxScopeLen {
		return Scope{}, invalid("invalid scope: longer than %d characters; %s", maxScopeLen, scopeFormatsHint)
	}
	if s == "/" {
		return Scope{level: LevelRoot}, nil
	}
	if len(s) > 1 && strings.HasSuffix(s, "/") {
		return Scope{}, invalid("invalid scope %q: remove the trailing slash", s)
	}
	rest, ok := strings.CutPrefix(s, "/")
	if !ok {
		return Scope{}, invalid("invalid scope %q: %s", s, scopeFormatsHint)
	}
	parts := strings.Split(rest, "/")
	keywords := [...]string{"groups", "clusters", "namespaces"}
	if len(parts)%2 != 0 || len(parts) > 2*len(keywords) {
		return Scope{}, invalid("invalid scope %q: %s", s, scopeFormatsHint)
	}
	var names [3]string
	for i := 0; i < len(parts); i += 2 {
		kw := keywords[i/2]
		if parts[i] != kw {
			return Scope{}, invalid("invalid scope %q: %s", s, scopeFormatsHint)
		}
		what := strings.TrimSuffix(kw, "s")
		if err := validateName(what, parts[i+1]); err != nil {
			return Scope{}, invalid("invalid scope %q: %v", s, err)
		}
		names[i/2] = parts[i+1]
	}
	return Scope{
		level:     LevelRoot + Level(len(parts)/2),
		group:     names[0],
		cluster:   names[1],
		namespace: names[2],
	}, nil
}

// validateName checks a group, cluster or namespace name; what names it in
// the message.
func validateName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is empty", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s name is longer than %d characters", what, MaxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Errorf("%s name %q: use lowercase letters, digits and '-', starting and ending with a letter or digit", what, s)
		}
	}
	return nil
}

// parseClusterID parses a cluster ID, a scope of LevelCluster.
func parseClusterID(id string) (Scope, error) {
	sc, err := ParseScope(id)
	if err != nil {
		return Scope{}, err
	}
	if sc.level != LevelCluster {
		return Scope{}, invalid("invalid cluster ID %q: want /groups/{group}/clusters/{cluster}", id)
	}
	return sc, nil
}

// String formats the scope as ParseScope accepts it; the zero Scope is "".
func (s Scope) String() string {
	switch s.level {
	case LevelRoot:
		return "/"
	case LevelGroup:
		return groupsPrefix + s.group
	case LevelCluster:
		return groupsPrefix + s.group + clustersInfix + s.cluster
	case LevelNamespace:
		return groupsPrefix + s.group + clustersInfix + s.cluster + namespacesInfix + s.namespace
	}
	return ""
}

// IsZero reports whether s is the zero Scope.
func (s Scope) IsZero() bool { return s.level == 0 }

// Level returns the scope's level; zero for the zero Scope.
func (s Scope) Level() Level { return s.level }

// Group returns the group name, or "" at LevelRoot.
func (s Scope) Group() string { return s.group }

// Cluster returns the cluster name, or "" above LevelCluster.
func (s Scope) Cluster() string { return s.cluster }

// Namespace returns the namespace name, or "" above LevelNamespace.
func (s Scope) Namespace() string { return s.namespace }

// Parent returns the scope one level up: the cluster of a namespace, the
// group of a cluster, the root of a group. The root and the zero Scope have
// no parent: Parent returns the zero Scope.
func (s Scope) Parent() Scope {
	switch s.level {
	case LevelGroup:
		return Scope{level: LevelRoot}
	case LevelCluster:
		return Scope{level: LevelGroup, group: s.group}
	case LevelNamespace:
		return Scope{level: LevelCluster, group: s.group, cluster: s.cluster}
	}
	return Scope{}
}

// Contains reports whether inner is outer or lies below it, that is whether
// an assignment at outer applies at inner. The zero Scope contains nothing
// and is contained in nothing.
func Contains(outer, inner Scope) bool {
	if outer.IsZero() || inner.IsZero() || outer.level > inner.level {
		return false
	}
	for inner.level > outer.level {
		inner = inner.Parent()
	}
	return inner == outer
}
