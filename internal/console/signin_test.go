package console_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"tether.dev/tether/internal/console"
	"tether.dev/tether/internal/store/sqlite"
)

// TestSignInChoices: with an external issuer besides the embedded one, the
// sign-in page offers both, the default (the first) as a#sign-in, each
// with its issuer's URL in data-issuer, which is how a script picks one
// whatever the names say; an issuer index out of range shows the same
// choices with an error.
func TestSignInChoices(t *testing.T) {
	st, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const hubURL, external = "https://hub.example.test", "https://login.example.test/tenant/v2.0"
	c, err := console.New(console.Config{URL: hubURL + "/console", HubURL: hubURL, Store: st, Issuers: []console.Issuer{
		{URL: external, ClientID: "tether-console-web", ClientSecret: "s3cret"},
		{Name: "this hub", URL: hubURL + "/oidc", ClientID: consoleID, Embedded: true},
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := c.Handler(http.NotFoundHandler())
	type choice struct{ ID, Issuer, Href, Text string }
	choices := func(t *testing.T, path string, wantStatus int) []choice {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, hubURL+path, nil))
		if rec.Code != wantStatus {
			t.Fatalf("GET %s: %d, want %d:\n%s", path, rec.Code, wantStatus, rec.Body)
		}
		doc, err := html.Parse(bytes.NewReader(rec.Body.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		var got []choice
		for _, a := range findAll(doc, func(n *html.Node) bool { return n.Data == "a" && attr(n, "data-issuer") != "" }) {
			got = append(got, choice{attr(a, "id"), attr(a, "data-issuer"), attr(a, "href"), text(a)})
		}
		return got
	}
	want := []choice{
		{"sign-in", external, "/console/auth/login?issuer=0", "Sign in with login.example.test"},
		{"sign-in-1", hubURL + "/oidc", "/console/auth/login?issuer=1", "Sign in with this hub"},
	}
	if diff := cmp.Diff(want, choices(t, "/console/", http.StatusOK)); diff != "" {
		t.Errorf("sign-in choices (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, choices(t, "/console/auth/login?issuer=2", http.StatusBadRequest)); diff != "" {
		t.Errorf("sign-in choices after an unknown issuer (-want +got):\n%s", diff)
	}
}
