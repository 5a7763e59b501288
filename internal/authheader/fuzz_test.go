package authheader

import (
	"net/http"
	"strings"
	"testing"
)

// FuzzBearer: Bearer returns a token only for "Bearer" (in any case) and a
// space; the token is the rest without surrounding white space, never
// empty; and it comes back from "Bearer " + token.
func FuzzBearer(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc ", "BEARER a b", "Bearer", "Bearer ", "Bearer\tabc", "Basic abc", "Bearerabc", " Bearer abc", "Bearer \u00a0abc\u2028", "Tether-Agent x.y", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, auth string) {
		token, ok := Bearer(auth)
		if !ok {
			if token != "" {
				t.Fatalf("Bearer(%q) = %q, false", auth, token)
			}
			return
		}
		scheme, rest, found := strings.Cut(auth, " ")
		if !found || !strings.EqualFold(scheme, "bearer") || token == "" || token != strings.TrimSpace(rest) {
			t.Fatalf("Bearer(%q) = %q", auth, token)
		}
		if again, ok := Bearer("Bearer " + token); !ok || again != token {
			t.Fatalf("Bearer(\"Bearer \" + %q) = %q, %v", token, again, ok)
		}
	})
}

// FuzzStripImpersonation: whatever the header names, in whatever case,
// none that net/http would send as an Impersonate-* header survives, and
// every other header does.
func FuzzStripImpersonation(f *testing.F) {
	for _, s := range []string{"Impersonate-User", "impersonate-group", "IMPERSONATE-EXTRA-scopes", "Impersonate-Uid", "Impersonate", "X-Impersonate-User", "Impersonate-\u212a", "Authorization"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		h := http.Header{name: {"admin"}, "Accept": {"application/json"}}
		StripImpersonation(h)
		if _, ok := h["Accept"]; !ok && name != "Accept" {
			t.Fatalf("stripped Accept along with %q", name)
		}
		for k := range h {
			if strings.HasPrefix(http.CanonicalHeaderKey(k), "Impersonate-") {
				t.Fatalf("%q survived", k)
			}
		}
		if _, ok := h[name]; !ok && !strings.HasPrefix(http.CanonicalHeaderKey(name), "Impersonate-") && name != "Accept" {
			t.Fatalf("stripped %q", name)
		}
	})
}
