package access

import (
	"net/url"
	"strings"
)

// Request is a Kubernetes API request's attributes as the API server's
// authorizer sees them (k8s.io/apiserver's RequestInfo): what the audit
// trail records of each request through the hub.
type Request struct {
	// Resource reports a resource request (/api/..., /apis/...); the other
	// fields but Verb and Path are then set.
	Resource bool `json:"-"`
	// Verb is get, list, watch, create, update, patch, delete or
	// deletecollection for a resource request; the lower-case method for
	// another (get, post, ...).
	Verb string
	// APIGroup is "" for the core group; APIVersion is v1, v1beta1, ...
	APIGroup, APIVersion string
	// ResourceName is the resource's plural name (pods); Subresource is
	// log, exec, status, ...; Namespace and Name are as in the path.
	ResourceName, Subresource, Namespace, Name string
	// Path is the request path of a non-resource request (/version).
	Path string
}

// namespaceSubresources are what may follow /namespaces/NAME and belong to
// the namespace itself.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// ParseRequest derives a request's attributes from its method, path and
// query, by the API server's rules: /api/VERSION/... (the core group) and
// /apis/GROUP/VERSION/... are resource requests, namespaced under
// /namespaces/NS/, with RESOURCE/NAME/SUBRESOURCE after; a GET without a
// name is a list, or a watch with watch=true (or under the old /watch/
// prefix); a DELETE without a name is a deletecollection. Anything else is
// a non-resource request. It does no I/O and accepts any input.
func ParseRequest(method, path string, query url.Values) Request {
	verb := map[string]string{"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
	parts := strings.Split(strings.Trim(path, "/"), "/")
	nonResource := Request{Verb: strings.ToLower(method), Path: path}
	if verb == "" || len(parts) < 2 {
		return nonResource
	}
	r := Request{Resource: true, Verb: verb}
	switch parts[0] {
	case "api":
		r.APIVersion, parts = parts[1], parts[2:]
	case "apis":
		if len(parts) < 3 {
			return nonResource // API discovery: /apis/GROUP
		}
		r.APIGroup, r.APIVersion, parts = parts[1], parts[2], parts[3:]
	default:
		return nonResource
	}
	if len(parts) == 0 {
		return nonResource // discovery: /api/v1, /apis/GROUP/VERSION
	}
	if parts[0] == "watch" || parts[0] == "proxy" { // the API server's verbs by path prefix
		r.Verb, parts = parts[0], parts[1:]
	}
	if len(parts) > 0 && parts[0] == "namespaces" && len(parts) > 1 {
		r.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	switch {
	case len(parts) >= 3 && r.Verb != "proxy": // after /proxy/, the rest is the target's path
		r.Subresource = parts[2]
		fallthrough
	case len(parts) >= 2:
		r.Name = parts[1]
		fallthrough
	case len(parts) >= 1:
		r.ResourceName = parts[0]
	}
	if r.Name == "" && r.Verb == "get" {
		// As metav1.ListOptions reads watch: only no value, "0" or "false"
		// (in any case) is false; "?watch" and "?watch=yes" watch.
		r.Verb = "list"
		if w := query["watch"]; len(w) > 0 && w[0] != "0" && !strings.EqualFold(w[0], "false") {
			r.Verb = "watch"
		}
	}
	if r.Name == "" && r.Verb == "delete" {
		r.Verb = "deletecollection"
	}
	return r
}
