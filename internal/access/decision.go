package access

import (
	"fmt"
	"slices"
	"strings"
)

// Principal is an authenticated caller.
type Principal struct {
	// ID is the caller's object ID (see ValidateObjectID).
	ID string
	// Type is PrincipalUser or PrincipalServicePrincipal.
	Type PrincipalType
	// Groups are the object IDs of the directory groups the caller is a
	// member of, as many as there are. Entries that are not object IDs (a
	// directory's group names) are ignored here.
	Groups []string
}

// validate checks that p can be a caller.
func (p Principal) validate() error {
	if err := ValidateObjectID(p.ID); err != nil {
		return fmt.Errorf("principal: %w", err)
	}
	if p.Type != PrincipalUser && p.Type != PrincipalServicePrincipal {
		return invalid("principal %s: type %s cannot sign in: want %s or %s", p.ID, clip(string(p.Type)), PrincipalUser, PrincipalServicePrincipal)
	}
	return nil
}

// Decision is the answer to an authorization question.
type Decision struct {
	// Allowed reports whether the principal may go ahead.
	Allowed bool
	// Message, when Allowed is false, tells the caller what was refused,
	// which role is missing and how to get it; it is written for kubectl
	// ("Error from server (Forbidden): ...") and the CLI. Empty when allowed.
	Message string
	// Grant, when Allowed, names the role and scope that allowed it, e.g.
	// `"Cluster User" at /groups/prod`: what the audit trail records.
	Grant string
}

func deny(msg string) Decision   { return Decision{Message: msg} }
func denyErr(err error) Decision { return deny(err.Error()) }

// Connect decides whether p may connect to the cluster with ID clusterID
// (/groups/{group}/clusters/{cluster}), in either authorization mode: some
// assignment that applies to p, directly or through one of its groups, at the
// cluster, its group or the root, must grant ActionClustersConnect (Cluster
// User, Contributor or Owner). Kubernetes roles alone do not let anyone
// connect.
//
// In Kubernetes-RBAC mode this is the hub's only check; in hub-RBAC mode
// KubernetesGroups then says what p may do in the cluster.
func Connect(p Principal, clusterID string, assignments []Assignment) Decision {
	cluster, err := parseClusterID(clusterID)
	if err != nil {
		return denyErr(err)
	}
	return decide(p, cluster, ActionClustersConnect, assignments, "connect to cluster", "at that cluster or its group")
}

// Authorize decides whether p may do action at scope on the hub's own API:
// some assignment that applies to p, directly or through one of its groups,
// at scope or a scope containing it, must grant the action.
func Authorize(p Principal, scope string, action Action, assignments []Assignment) Decision {
	sc, err := ParseScope(scope)
	if err != nil {
		return denyErr(err)
	}
	if !slices.Contains(Actions(), action) {
		return deny(fmt.Sprintf("unknown action %s", clip(string(action))))
	}
	return decide(p, sc, action, assignments, "do "+string(action)+" at", "at that scope or one containing it")
}

// decide is Connect and Authorize: what and where phrase the denial.
func decide(p Principal, scope Scope, action Action, assignments []Assignment, what, where string) Decision {
	if err := p.validate(); err != nil {
		return denyErr(err)
	}
	roles := RoleDefinitions()
	for _, g := range applicable(p, assignments, roles) {
		if g.role.Allows(action) && Contains(g.scope, scope) {
			return Decision{Allowed: true, Grant: fmt.Sprintf("%q at %s", g.role.Name, g.scope)}
		}
	}
	var need []string
	var suggest Role
	for _, r := range roles {
		if r.Allows(action) {
			if len(need) == 0 {
				suggest = r
			}
			need = append(need, r.Name)
		}
	}
	or := ""
	if len(need) > 1 {
		or = " (or " + strings.Join(need[1:], "/") + ")"
	}
	return deny(fmt.Sprintf("principal %s may not %s %s: it needs the %q role%s %s; "+
		"ask an Owner to run: tether role assignment create --role %q --assignee %s --scope %s",
		p.ID, what, scope, suggest.Name, or, where, suggest.Name, p.ID, assignableScope(suggest, scope)))
}

// grant is a valid assignment that applies to a principal.
type grant struct {
	role  Role
	scope Scope
}

// applicable returns the valid assignments that apply to p: those to its
// object ID as a user or service principal, and those to one of its groups.
func applicable(p Principal, assignments []Assignment, roles []Role) []grant {
	var groups map[string]bool // p.Groups as a set, made on first use
	var grants []grant
	for _, a := range assignments {
		switch a.PrincipalType {
		case PrincipalUser, PrincipalServicePrincipal:
			if a.PrincipalID != p.ID {
				continue
			}
		case PrincipalGroup:
			if groups == nil {
				groups = make(map[string]bool, len(p.Groups))
				for _, g := range p.Groups {
					groups[g] = true
				}
			}
			if !groups[a.PrincipalID] {
				continue
			}
		default:
			continue
		}
		role, scope, err := a.check(roles)
		if err != nil {
			continue // an invalid assignment grants nothing
		}
		grants = append(grants, grant{role: role, scope: scope})
	}
	return grants
}
