// Package authheader handles the request headers that carry identity:
// Authorization and Kubernetes' Impersonate-* family. Every hop of Tether
// (local proxy, hub, agent) strips what a client must not decide.
package authheader

import (
	"net/http"
	"strings"
)

// Bearer returns the token of an "Authorization: Bearer TOKEN" value.
func Bearer(auth string) (string, bool) {
	scheme, token, ok := strings.Cut(auth, " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

// StripImpersonation removes every Impersonate-* header (Impersonate-User,
// -Group, -Uid, -Extra-*): impersonation is the agent's to add, never a
// client's.
func StripImpersonation(h http.Header) {
	for name := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(name), "Impersonate-") {
			delete(h, name)
		}
	}
}
