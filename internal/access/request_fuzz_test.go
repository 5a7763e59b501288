package access_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

// apiServerRequestInfo restates k8s.io/apiserver's
// RequestInfoFactory.NewRequestInfo (pkg/endpoints/request/requestinfo.go,
// v0.37) for the methods ParseRequest gives a verb, as the oracle of
// FuzzParseRequestLikeAPIServer. It leaves out what ParseRequest does not
// model (the name a fieldSelector picks, the selectors). ok is false where
// the API server refuses the request (a special verb with nothing after).
func apiServerRequestInfo(method, path string, query url.Values) (r access.Request, ok bool) {
	r = access.Request{Verb: strings.ToLower(method), Path: path}
	var parts []string
	if p := strings.Trim(path, "/"); p != "" {
		parts = strings.Split(p, "/")
	}
	if len(parts) < 3 || parts[0] != "api" && parts[0] != "apis" {
		return r, true
	}
	prefix := parts[0]
	parts = parts[1:]
	if prefix == "apis" {
		if len(parts) < 3 {
			return r, true
		}
		r.APIGroup, parts = parts[0], parts[1:]
	}
	r = access.Request{Resource: true, APIGroup: r.APIGroup, APIVersion: parts[0]}
	parts = parts[1:]
	if parts[0] == "proxy" || parts[0] == "watch" {
		if len(parts) < 2 {
			return r, false
		}
		r.Verb, parts = parts[0], parts[1:]
	} else {
		r.Verb = map[string]string{"POST": "create", "GET": "get", "HEAD": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		r.Namespace = parts[1]
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	switch {
	case len(parts) >= 3 && r.Verb != "proxy":
		r.Subresource = parts[2]
		fallthrough
	case len(parts) >= 2:
		r.Name = parts[1]
		fallthrough
	case len(parts) >= 1:
		r.ResourceName = parts[0]
	}
	if r.Name == "" && r.Verb == "get" {
		// metav1.ListOptions' watch: only no value, "0" or "false" (in any
		// case) is false (runtime.Convert_Slice_string_To_bool).
		r.Verb = "list"
		if w := query["watch"]; len(w) > 0 && w[0] != "0" && !strings.EqualFold(w[0], "false") {
			r.Verb = "watch"
		}
	}
	if r.Name == "" && r.Verb == "delete" {
		r.Verb = "deletecollection"
	}
	return r, true
}

// FuzzParseRequestLikeAPIServer: the attributes the audit trail records
// for a request are the ones the API server's authorizer sees (for the
// methods of the Kubernetes verbs; other methods are non-resource requests
// by ParseRequest's own rule), so a client cannot make its request look
// like another in the trail.
func FuzzParseRequestLikeAPIServer(f *testing.F) {
	for _, seed := range []struct{ method, path, query string }{
		{"GET", "/api/v1/namespaces/web/pods", "watch=true"},
		{"GET", "/api/v1/namespaces/web/pods", "watch=false&watch=true"},
		{"GET", "/api/v1/namespaces/web/pods/p1/log", "follow=1"},
		{"POST", "/api/v1/namespaces/web/pods/p1/exec", "command=sh"},
		{"PUT", "/api/v1/namespaces/web/finalize", ""},
		{"DELETE", "/apis/apps/v1/namespaces/web/deployments", ""},
		{"HEAD", "/apis/apps/v1/deployments", ""},
		{"GET", "/api/v1/watch/namespaces/web/pods/p1", ""},
		{"GET", "/api/v1/proxy/namespaces/web/pods/p1/metrics", ""},
		{"GET", "/api/v1/pods", "watch"},
		{"GET", "/api/v1/pods", "watch=True"},
		{"GET", "/api/v1/pods", "watch=no"},
		{"GET", "//api//v1/namespaces/a/pods", ""},
		{"GET", "/apis/g/v", ""},
		{"OPTIONS", "/api/v1/pods", ""},
		{"GET", "/version", ""},
	} {
		f.Add(seed.method, seed.path, seed.query)
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		q, _ := url.ParseQuery(query)
		got := access.ParseRequest(method, path, q)
		switch method {
		case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE":
		default:
			if want := (access.Request{Verb: strings.ToLower(method), Path: path}); got != want {
				t.Fatalf("ParseRequest(%q, %q) = %+v, want the non-resource request %+v", method, path, got, want)
			}
			return
		}
		want, ok := apiServerRequestInfo(method, path, q)
		if !ok {
			return // the API server refuses it
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("ParseRequest(%q, %q, %q) differs from the API server's attributes (-apiserver +got):\n%s", method, path, query, diff)
		}
	})
}
