package access_test

import (
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/access"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		method, path, query string
		want                access.Request
	}{
		{"GET", "/api/v1/pods", "", access.Request{Resource: true, Verb: "list", APIVersion: "v1", ResourceName: "pods"}},
		{"GET", "/api/v1/namespaces/web/pods", "watch=true", access.Request{Resource: true, Verb: "watch", APIVersion: "v1", Namespace: "web", ResourceName: "pods"}},
		{"GET", "/api/v1/namespaces/web/pods/p1/log", "", access.Request{Resource: true, Verb: "get", APIVersion: "v1", Namespace: "web", ResourceName: "pods", Name: "p1", Subresource: "log"}},
		{"POST", "/api/v1/namespaces/web/pods/p1/exec", "command=sh", access.Request{Resource: true, Verb: "create", APIVersion: "v1", Namespace: "web", ResourceName: "pods", Name: "p1", Subresource: "exec"}},
		{"GET", "/api/v1/namespaces/web", "", access.Request{Resource: true, Verb: "get", APIVersion: "v1", Namespace: "web", ResourceName: "namespaces", Name: "web"}},
		{"PUT", "/api/v1/namespaces/web/finalize", "", access.Request{Resource: true, Verb: "update", APIVersion: "v1", Namespace: "web", ResourceName: "namespaces", Name: "web", Subresource: "finalize"}},
		{"DELETE", "/apis/apps/v1/namespaces/web/deployments", "", access.Request{Resource: true, Verb: "deletecollection", APIGroup: "apps", APIVersion: "v1", Namespace: "web", ResourceName: "deployments"}},
		{"PATCH", "/apis/apps/v1/namespaces/web/deployments/d1/scale", "", access.Request{Resource: true, Verb: "patch", APIGroup: "apps", APIVersion: "v1", Namespace: "web", ResourceName: "deployments", Name: "d1", Subresource: "scale"}},
		{"GET", "/api/v1/watch/namespaces/web/pods", "", access.Request{Resource: true, Verb: "watch", APIVersion: "v1", Namespace: "web", ResourceName: "pods"}},
		{"GET", "/version", "", access.Request{Verb: "get", Path: "/version"}},
		{"GET", "/apis/apps", "", access.Request{Verb: "get", Path: "/apis/apps"}},
		{"GET", "/api/v1", "", access.Request{Verb: "get", Path: "/api/v1"}},
		{"OPTIONS", "/api/v1/pods", "", access.Request{Verb: "options", Path: "/api/v1/pods"}},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got := access.ParseRequest(tt.method, tt.path, q)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseRequest(%s %s?%s) (-want +got):\n%s", tt.method, tt.path, tt.query, diff)
		}
	}
}

// FuzzParseRequest: any input parses, and a resource request's name never
// contains a slash (each field is one path segment).
func FuzzParseRequest(f *testing.F) {
	f.Add("GET", "/api/v1/namespaces/a/pods/b/log", "watch=1")
	f.Add("DELETE", "/apis/g/v/x", "")
	f.Add("GET", "//api//v1/../x", "")
	f.Fuzz(func(t *testing.T, method, path, query string) {
		q, _ := url.ParseQuery(query)
		r := access.ParseRequest(method, path, q)
		for _, s := range []string{r.APIGroup, r.APIVersion, r.ResourceName, r.Subresource, r.Namespace, r.Name} {
			for i := 0; i < len(s); i++ {
				if s[i] == '/' {
					t.Fatalf("ParseRequest(%q, %q) = %+v: a field holds a slash", method, path, r)
				}
			}
		}
		if !r.Resource && r.Path != path {
			t.Fatalf("non-resource request lost its path: %+v", r)
		}
	})
}
