package issuer

import (
	"strings"
	"testing"
	"time"
)

func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdf ghjk", "bcdfghjk", "BCDF-GHJ", "AEIO-UAEI", "ＢＣＤＦ-ＧＨＪＫ", "BCDF\u00a0GHJK", "", strings.Repeat("B", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := normalizeUserCode(s)
		if n == "" {
			return
		}
		if len(n) != userCodeLen || strings.Trim(n, userCodeAlphabet) != "" {
			t.Fatalf("normalizeUserCode(%q) = %q, not a user code", s, n)
		}
		if again := normalizeUserCode(formatUserCode(n)); again != n {
			t.Fatalf("the shown form %q normalizes to %q, not %q", formatUserCode(n), again, n)
		}
	})
}

func TestNewUserCode(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		c := newUserCode()
		if normalizeUserCode(c) != c {
			t.Fatalf("drawn code %q is not normal", c)
		}
		seen[c] = true
	}
	if len(seen) < 999 {
		t.Errorf("%d distinct codes of 1000", len(seen))
	}
}

func FuzzParseLoopbackRedirect(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:5000/callback", "http://[::1]:80/", "http://localhost:1/x?y=z", "http://LOCALHOST:65535",
		"https://127.0.0.1:5000/", "http://127.0.0.1/", "http://127.0.0.1:0/", "http://127.0.0.1:65536/", "http://127.0.0.1:05000/",
		"http://a@127.0.0.1:1/", "http://127.0.0.1:1/#f", "http://127.0.0.1:1\\@evil.example/", "http://127.0.0.1%2f@evil:1/", "http:///x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseLoopbackRedirect(s)
		if err != nil {
			return
		}
		host := strings.ToLower(u.Hostname())
		if u.Scheme != "http" || (host != "127.0.0.1" && host != "::1" && host != "localhost") || u.User != nil || u.Port() == "" {
			t.Fatalf("accepted %q: host %q", s, u.Host)
		}
	})
}

// FuzzRefreshToken checks that whatever is presented as a refresh token,
// only one the issuer signed is accepted, with the claims it signed.
func FuzzRefreshToken(f *testing.F) {
	st, key := newStoreAndKey(f)
	iss, err := New(Config{URL: "https://hub.example/oidc", Store: st, Key: key, Audience: audience, CLIClientID: cliID}, nil)
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	tr, err := iss.personTokens(now, iss.cfg.CLIClientID, person{ID: aliceID, DisplayName: "Alice", LoginName: aliceLogin, Pwd: "cHdk", AuthTime: now}, []string{"openid"}, "n")
	if err != nil {
		f.Fatal(err)
	}
	want, err := iss.parseRefreshToken(tr.RefreshToken, now)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{tr.RefreshToken, tr.AccessToken, tr.IDToken, "a.b.c", "", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat(".", 5000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := iss.parseRefreshToken(s, now)
		if err == nil && got != want {
			t.Fatalf("accepted a token with claims %+v", got)
		}
	})
}
