package credentials

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientauthinstall "k8s.io/client-go/pkg/apis/clientauthentication/install"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
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

// FuzzCacheEntry: whatever a token cache file holds, Load and List either
// return the entry (of the one version there is) or an error that names
// the file and says to remove it; an entry that loads is stored and loaded
// again unchanged.
func FuzzCacheEntry(f *testing.F) {
	for _, s := range []string{
		`{"version":1,"key":{"issuer":"https://i.test","client_id":"cli","login":"default"},"token":{"access_token":"at","refresh_token":"rt","expiry":"2030-01-02T03:04:05Z"},"grant":"user"}`,
		`{"version":1,"key":{"issuer":"https://other.test","client_id":"x","login":"default"},"token":{"access_token":"at","expiry":"0001-01-01T00:00:00Z"},"grant":"client_credentials"}`,
		`{"version":2,"token":{"access_token":"at"}}`,
		`{"version":1,"token":{"expiry":"not a time"}}`,
		`{"version":1,"token":{"access_token":"\u0000\ud800","expiry":"2030-01-02T03:04:05.999999999+14:00"}} trailing`,
		`{"version":1e400}`,
		`{"version":1,"token":{"expiry":"10000-01-01T00:00:00Z"}}`,
		`[]`, `null`, ``, "\xff",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, content []byte) {
		c, err := OpenCache(filepath.Join(t.TempDir(), "tether"))
		if err != nil {
			t.Fatal(err)
		}
		k := Key{Issuer: "https://i.test", ClientID: "cli"}
		if err := os.WriteFile(c.path(k), content, cacheFileMode); err != nil {
			t.Fatal(err)
		}
		e, ok, err := c.Load(k)
		list, listErr := c.List()
		if err != nil {
			if ok || !strings.Contains(err.Error(), c.path(k)) || !strings.Contains(err.Error(), "remove the file and sign in again") {
				t.Fatalf("Load error %q does not name the file and say what to do", err)
			}
			if len(list) != 0 || listErr == nil {
				t.Fatalf("List = %v, %v for a file Load refuses", list, listErr)
			}
			return
		}
		if !ok || e.Version != entryVersion || len(list) != 1 || listErr != nil {
			t.Fatalf("Load = %+v, %v; List = %v, %v", e, ok, list, listErr)
		}
		if err := c.Store(k, e.Token, e.Grant); err != nil {
			t.Fatalf("Store of a loaded token: %v", err)
		}
		again, ok, err := c.Load(k)
		if err != nil || !ok {
			t.Fatalf("Load after Store: %v, %v", ok, err)
		}
		if diff := cmp.Diff(e.Token, again.Token, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" || again.Grant != e.Grant {
			t.Fatalf("the entry changed through Store and Load (-before +after):\n%s", diff)
		}
	})
}

// FuzzExecCredential: the ExecCredential printed for kubectl, decoded the
// way client-go's exec plugin support decodes it, carries exactly the
// token and, to the second, its expiry; an empty token is an error. Tokens reach ExecCredential from
// JSON (the issuer's response, the cache), so they are valid UTF-8.
func FuzzExecCredential(f *testing.F) {
	for _, seed := range []struct {
		token string
		sec   int64
		nsec  uint32
	}{
		{"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", 1_900_000_000, 5},
		{"tok", 0, 0},
		{"", 1_900_000_000, 0},
		{"a\"b\\c\u2028</script>", -1, 999_999_999},
		{"x", 253402300799, 0}, // the last second of 9999
		{"x", -62135596800, 0}, // the first of the year 1
	} {
		f.Add(seed.token, seed.sec, seed.nsec)
	}
	scheme := runtime.NewScheme()
	clientauthinstall.Install(scheme)
	decoder := serializer.NewCodecFactory(scheme).UniversalDecoder(clientauthv1.SchemeGroupVersion)
	f.Fuzz(func(t *testing.T, token string, sec int64, nsec uint32) {
		if !utf8.ValidString(token) {
			return
		}
		var expiry time.Time
		if sec != 0 || nsec != 0 {
			expiry = time.Unix(sec, int64(nsec%1e9))
		}
		if y := expiry.UTC().Year(); !expiry.IsZero() && (y < 1 || y > 9999) {
			// RFC 3339, and so metav1.Time, has four-digit years. Tokens'
			// expiries come from JSON or from expires_in (an int32 of
			// seconds): they are never so far off.
			return
		}
		b, err := ExecCredential(token, expiry)
		if token == "" {
			if err == nil {
				t.Fatalf("ExecCredential(%q, %v) = %s, want an error", token, expiry, b)
			}
			return
		}
		if err != nil {
			t.Fatalf("ExecCredential(%q, %v): %v", token, expiry, err)
		}
		var ec clientauthv1.ExecCredential
		if _, _, err := decoder.Decode(b, nil, &ec); err != nil {
			t.Fatalf("client-go cannot decode %s: %v", b, err)
		}
		if ec.Status == nil || ec.Status.Token != token {
			t.Fatalf("decoded status %+v, want token %q", ec.Status, token)
		}
		switch ts := ec.Status.ExpirationTimestamp; {
		case expiry.IsZero() && ts != nil:
			t.Fatalf("expiry %v for a token without one", ts)
		case !expiry.IsZero() && (ts == nil || !ts.Time.Equal(expiry.Truncate(time.Second))):
			t.Fatalf("expiry %v, want %v", ts, expiry.Truncate(time.Second))
		}
	})
}
