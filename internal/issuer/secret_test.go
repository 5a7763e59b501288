package issuer

import (
	"strings"
	"testing"

	"tether.dev/tether/internal/store"
)

func TestPasswordHash(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(h), "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("hash %q is not the expected PHC string", h)
	}
	h2, _ := HashPassword("correct horse battery")
	if string(h) == string(h2) {
		t.Fatal("two hashes of one password are equal: no salt")
	}
	for pw, want := range map[string]bool{"correct horse battery": true, "correct horse batterY": false, "": false, strings.Repeat("x", 300): false} {
		got, err := CheckPassword(h, pw)
		if err != nil || got != want {
			t.Errorf("CheckPassword(%.20q) = %v, %v; want %v", pw, got, err, want)
		}
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=99999999,t=1,p=1$AA$AA", "$argon2id$v=18$m=8,t=1,p=1$AA$AA"} {
		if _, err := CheckPassword([]byte(bad), "whatever-password"); err == nil {
			t.Errorf("CheckPassword accepted the hash %q", bad)
		}
	}
	if _, err := HashPassword("short"); err == nil || !strings.Contains(err.Error(), "at least 12") {
		t.Errorf("a 5-character password: err = %v", err)
	}
}

func TestClientSecret(t *testing.T) {
	s1, h1 := NewClientSecret()
	s2, h2 := NewClientSecret()
	if s1 == s2 || h1 == h2 || !strings.HasPrefix(s1, ClientSecretPrefix) || len(s1) < 40 {
		t.Fatalf("secrets %q %q", s1, s2)
	}
	stored := []store.ClientSecret{{Hash: h2}, {Hash: h1}}
	if !MatchClientSecret(s1, stored) || !MatchClientSecret(s2, stored) {
		t.Fatal("a stored secret did not match")
	}
	if MatchClientSecret(s1+"x", stored) || MatchClientSecret(s1, nil) {
		t.Fatal("a wrong secret matched")
	}
}

// BenchmarkSecretChecks: what one sign-in costs the hub, a person's
// password (Argon2id, deliberately slow) against a service principal's
// random secret (SHA-256), the baseline.
func BenchmarkSecretChecks(b *testing.B) {
	secret, hash := NewClientSecret()
	stored := []store.ClientSecret{{Hash: hash}}
	b.Run("baseline: client secret", func(b *testing.B) {
		for b.Loop() {
			if !MatchClientSecret(secret, stored) {
				b.Fatal("no match")
			}
		}
	})
	pwHash, err := HashPassword("correct horse battery")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("password", func(b *testing.B) {
		for b.Loop() {
			if ok, err := CheckPassword(pwHash, "correct horse battery"); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
