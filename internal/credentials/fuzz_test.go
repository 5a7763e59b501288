package credentials

import (
	"strings"
	"testing"
)

// FuzzParseDiscovery feeds discovery documents from outside; the seeds run
// as ordinary tests.
func FuzzParseDiscovery(f *testing.F) {
	f.Add(`{"issuer":"https://i.test","token_endpoint":"https://i.test/token","device_authorization_endpoint":"https://i.test/device/auth"}`)
	f.Add(`{"issuer":"https://other.test","token_endpoint":"x"}`)
	f.Add(`{"issuer":"https://i.test"}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, doc string) {
		e, err := parseDiscovery("https://i.test", []byte(doc))
		if err == nil && (e.TokenURL == "" || strings.TrimSuffix(e.Issuer, "/") != "https://i.test") {
			t.Errorf("accepted %q as %+v", doc, e)
		}
	})
}

// FuzzJWTClaim feeds ID tokens from the issuer.
func FuzzJWTClaim(f *testing.F) {
	f.Add("eyJhbGciOiJub25lIn0.eyJub25jZSI6Im4ifQ.")
	f.Add("a.b.c")
	f.Add("....")
	f.Fuzz(func(t *testing.T, jwt string) {
		jwtClaim(jwt, "nonce") // must not panic
	})
}
