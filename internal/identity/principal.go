package identity

import (
	"strings"
	"time"
)

// PrincipalType tells a person from a program.
type PrincipalType string

const (
	TypeUser             PrincipalType = "user"
	TypeServicePrincipal PrincipalType = "servicePrincipal"
)

// Principal is a verified caller.
type Principal struct {
	// ID is the object ID, the user name the API server sees.
	ID string
	// Name is a display name, for logs and audit only; never authorize on it.
	Name string
	Type PrincipalType
	// Issuer is the URL of the issuer that vouched for the caller.
	Issuer string
	// Groups are the caller's group IDs, inline or resolved from an
	// overage source; nil when none. Order as the issuer gave them,
	// duplicates removed.
	Groups []string
	// Expiry is when the caller's token expires.
	Expiry time.Time
}

// MaxGroups bounds the groups of one principal or assertion. Far above
// Entra's 200-group token limit: overage is resolved, not refused.
const MaxGroups = 10000

// maxNameLen bounds one group name or ID taken from outside input.
const maxNameLen = 1024

// systemPrefix is Kubernetes' reserved namespace of users and groups
// (system:masters, system:node:..., system:serviceaccount:...). A caller is
// never mapped onto it: a name there is refused outright, not filtered, so
// a misconfigured issuer is noticed.
const systemPrefix = "system:"

func isSystem(name string) bool {
	return strings.HasPrefix(name, systemPrefix)
}

// checkGroups refuses system: groups, empty or oversized names and too many
// groups, and returns the groups with duplicates removed (nil when none).
func checkGroups(groups []string) ([]string, error) {
	if len(groups) > MaxGroups {
		return nil, refuse(ErrTooManyGroups, "%d groups, at most %d", len(groups), MaxGroups)
	}
	if len(groups) == 0 {
		return nil, nil
	}
	seen := make(map[string]struct{}, len(groups))
	out := make([]string, 0, len(groups))
	for _, g := range groups {
		switch {
		case g == "":
			return nil, refuse(ErrMalformed, "empty group name")
		case len(g) > maxNameLen:
			return nil, refuse(ErrMalformed, "group name longer than %d bytes", maxNameLen)
		case isSystem(g):
			return nil, refuse(ErrSystemIdentity, "group %s", quoteBounded(g))
		}
		if _, dup := seen[g]; dup {
			continue
		}
		seen[g] = struct{}{}
		out = append(out, g)
	}
	return out, nil
}
