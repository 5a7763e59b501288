package authheader

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBearer(t *testing.T) {
	tests := []struct {
		name, in, want string
		ok             bool
	}{
		{name: "bearer", in: "Bearer abc", want: "abc", ok: true},
		{name: "case-insensitive scheme", in: "bearer abc", want: "abc", ok: true},
		{name: "basic", in: "Basic dXNlcjpwYXNz"},
		{name: "empty token", in: "Bearer  "},
		{name: "no scheme", in: "abc"},
		{name: "empty", in: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Bearer(tt.in)
			if diff := cmp.Diff([]any{tt.want, tt.ok}, []any{got, ok}); diff != "" {
				t.Errorf("Bearer(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestStripImpersonation(t *testing.T) {
	h := http.Header{}
	h.Set("Impersonate-User", "admin")
	h.Add("Impersonate-Group", "system:masters")
	h.Set("Impersonate-Uid", "1")
	h.Set("Impersonate-Extra-Scopes", "x")
	h["impersonate-user"] = []string{"raw lowercase key"}
	h.Set("Authorization", "Bearer keep")
	h.Set("Accept", "application/json")
	StripImpersonation(h)
	want := http.Header{"Authorization": {"Bearer keep"}, "Accept": {"application/json"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}
