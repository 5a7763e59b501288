package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/oidcprovider"
)

// userToken signs alice in with the harness client and returns the result
// as a cached Token with the given expiry, and the cache key for it.
func userToken(t *testing.T, expiry time.Time) (Token, Key) {
	t.Helper()
	tt, err := provider.UserToken(testContext(t), alice, alicePW, hubAudience)
	if err != nil {
		t.Fatal(err)
	}
	tok := Token{AccessToken: tt.AccessToken, TokenType: tt.TokenType, RefreshToken: tt.RefreshToken, IDToken: tt.IDToken, Expiry: expiry}
	return tok, Key{Issuer: provider.Issuer, ClientID: oidcprovider.HarnessClientID, Audience: hubAudience, Scopes: []string{"openid", "profile"}}
}

func refreshSource(t *testing.T, cache *Cache, ep Endpoints, now func() time.Time) *Source {
	t.Helper()
	s, err := New(Config{Issuer: provider.Issuer, ClientID: oidcprovider.HarnessClientID, Audience: hubAudience, Scopes: []string{"openid", "profile"},
		Cache: cache, HTTPClient: issuerClient(), Endpoints: ep, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRefreshBeforeExpiry(t *testing.T) {
	tests := []struct {
		name          string
		beforeExpiry  time.Duration // how long before the token's expiry Get runs
		wantRefreshes int64
	}{
		{name: "well before expiry: cached", beforeExpiry: 2 * time.Minute, wantRefreshes: 0},
		{name: "inside the skew: refreshed", beforeExpiry: 30 * time.Second, wantRefreshes: 1},
		{name: "expired: refreshed", beforeExpiry: -time.Hour, wantRefreshes: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			proxy := startTokenProxy(t)
			cache := newCache(t)
			expiry := time.Now().Add(time.Hour)
			old, key := userToken(t, expiry)
			if err := cache.Store(key, old, GrantUser); err != nil {
				t.Fatal(err)
			}
			clk := &clock{}
			clk.Set(expiry.Add(-tc.beforeExpiry))
			src := refreshSource(t, cache, proxy.endpoints, clk.Now)

			tok, err := src.Get(testContext(t))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantRefreshes, proxy.calls.Load()); diff != "" {
				t.Errorf("token endpoint calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantRefreshes == 0, tok.AccessToken == old.AccessToken); diff != "" {
				t.Errorf("got the old access token (-want +got):\n%s", diff)
			}
			e, _, err := cache.Load(key)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tok.AccessToken, e.Token.AccessToken); diff != "" {
				t.Errorf("cached token is not the one returned (-want +got):\n%s", diff)
			}
			if tok.IDToken == "" || tok.RefreshToken == "" {
				t.Error("the refreshed token lost its ID or refresh token")
			}
		})
	}
}

func TestConcurrentGetRefreshesOnce(t *testing.T) {
	const n = 8
	proxy := startTokenProxy(t)
	dir := t.TempDir() + "/tether"
	cache, err := OpenCache(dir)
	if err != nil {
		t.Fatal(err)
	}
	old, key := userToken(t, time.Now().Add(-time.Minute)) // expired
	if err := cache.Store(key, old, GrantUser); err != nil {
		t.Fatal(err)
	}

	ctx := testContext(t)
	tokens := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// Each caller opens the cache itself, as separate get-token
			// processes do; the refresh token rotates, so a second
			// refresh with the old one would fail.
			c, err := OpenCache(dir)
			if err != nil {
				errs[i] = err
				return
			}
			tok, err := refreshSource(t, c, proxy.endpoints, time.Now).Get(ctx)
			tokens[i], errs[i] = tok.AccessToken, err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(int64(1), proxy.calls.Load()); diff != "" {
		t.Errorf("refreshes at the token endpoint (-want +got):\n%s", diff)
	}
	if got := slices.Compact(slices.Clone(tokens)); len(got) != 1 || got[0] == old.AccessToken {
		t.Errorf("callers got %d different tokens (want one new one)", len(got))
	}
}

func TestCacheModes(t *testing.T) {
	cache := newCache(t)
	key := Key{Issuer: "https://issuer.test", ClientID: "cli"}
	if err := cache.Store(key, Token{AccessToken: "a", Expiry: time.Unix(2e9, 0)}, GrantUser); err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{}
	for _, p := range []string{cache.Dir(), cache.path(key)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		modes[filepath.Base(p)] = fi.Mode().Perm()
	}
	want := map[string]os.FileMode{"tether": 0o700, key.name() + ".json": 0o600}
	if diff := cmp.Diff(want, modes); diff != "" {
		t.Errorf("modes (-want +got):\n%s", diff)
	}
}

func TestCacheRefusesLoosePermissions(t *testing.T) {
	key := Key{Issuer: "https://issuer.test", ClientID: "cli"}
	tests := []struct {
		name    string
		spoil   func(dir, file string) error
		wantErr string
	}{
		{name: "file 0644", spoil: func(_, file string) error { return os.Chmod(file, 0o644) }, wantErr: "run chmod 600"},
		{name: "directory 0755", spoil: func(dir, _ string) error { return os.Chmod(dir, 0o755) }, wantErr: "run chmod 700"},
		{name: "file of another user", spoil: func(_, file string) error {
			if os.Geteuid() != 0 {
				return errSkip
			}
			return os.Chown(file, 4242, 4242)
		}, wantErr: "belongs to user 4242"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := newCache(t)
			if err := cache.Store(key, Token{AccessToken: "a"}, GrantUser); err != nil {
				t.Fatal(err)
			}
			err := tc.spoil(cache.Dir(), cache.path(key))
			if errors.Is(err, errSkip) {
				t.Skip("changing a file's owner needs root")
			}
			if err != nil {
				t.Fatal(err)
			}
			// Whichever of opening and loading finds it, it is refused.
			c, err := OpenCache(cache.Dir())
			if err == nil {
				_, _, err = c.Load(key)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

var errSkip = errors.New("skip")

func TestLogout(t *testing.T) {
	keys := []Key{
		{Issuer: "https://a.test", ClientID: "cli", Login: "admin"},
		{Issuer: "https://a.test", ClientID: "cli"},
		{Issuer: "https://b.test", ClientID: "cli", Scopes: []string{"profile", "openid"}},
	}
	tests := []struct {
		name        string
		issuer      string
		wantRemoved []Key
		wantLeft    []Key
	}{
		{name: "one issuer", issuer: "https://a.test/", wantRemoved: normal(keys[:2]), wantLeft: normal(keys[2:])},
		{name: "all", issuer: "", wantRemoved: normal(keys), wantLeft: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := newCache(t)
			for _, k := range keys {
				if err := cache.Store(k, Token{AccessToken: "a"}, GrantUser); err != nil {
					t.Fatal(err)
				}
			}
			removed, err := cache.Logout(context.Background(), tc.issuer)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantRemoved, removed); diff != "" {
				t.Errorf("removed (-want +got):\n%s", diff)
			}
			entries, err := cache.List()
			if err != nil {
				t.Fatal(err)
			}
			var left []Key
			for _, e := range entries {
				left = append(left, e.Key)
			}
			if diff := cmp.Diff(tc.wantLeft, left); diff != "" {
				t.Errorf("left (-want +got):\n%s", diff)
			}
		})
	}
}

func normal(keys []Key) []Key {
	var out []Key
	for _, k := range keys {
		out = append(out, k.normal())
	}
	return out
}

func TestNotSignedIn(t *testing.T) {
	tests := []struct {
		name    string
		entry   *Entry
		wantErr string
	}{
		{name: "nothing cached", wantErr: "not signed in"},
		{name: "expired without refresh token", entry: &Entry{Token: Token{AccessToken: "a", Expiry: time.Unix(1e9, 0)}, Grant: GrantUser}, wantErr: "cannot be refreshed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cache := newCache(t)
			src, err := New(Config{Issuer: "https://issuer.invalid", ClientID: "cli", Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			if tc.entry != nil {
				if err := cache.Store(src.Key(), tc.entry.Token, tc.entry.Grant); err != nil {
					t.Fatal(err)
				}
			}
			_, err = src.Get(context.Background())
			if !errors.Is(err, ErrLoginRequired) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "tether login") {
				t.Fatalf("error %v, want ErrLoginRequired containing %q and tether login", err, tc.wantErr)
			}
		})
	}
}

func TestExecCredential(t *testing.T) {
	got, err := ExecCredential("header.payload.sig", time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var gotDoc, wantDoc any
	json.Unmarshal(got, &gotDoc)
	json.Unmarshal([]byte(`{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false},
		"status":{"token":"header.payload.sig","expirationTimestamp":"2030-01-02T03:04:05Z"}}`), &wantDoc)
	if diff := cmp.Diff(wantDoc, gotDoc); diff != "" {
		t.Errorf("ExecCredential (-want +got):\n%s", diff)
	}
}
