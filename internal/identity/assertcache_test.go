package identity

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAssertionReuse(t *testing.T) {
	s := newSigner(t, seededKey(1))
	now := time.Unix(1_800_000_000, 0)
	a := Assertion{Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID, Groups: []string{"g1", "g2"}}
	first, err := s.Reuse(a, now)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := s.Reuse(a, now.Add(AssertionReuse-time.Second)); again != first {
		t.Error("the same caller and cluster within AssertionReuse got a new assertion")
	}
	if later, _ := s.Reuse(a, now.Add(AssertionReuse)); later == first {
		t.Error("an assertion was reused for AssertionReuse or longer")
	}
	if back, _ := s.Reuse(a, now.Add(-time.Second)); back == first {
		t.Error("an assertion was reused after the clock went back before it was signed")
	}
	// The others are compared with a's assertion of the same moment.
	first, err = s.Reuse(a, now)
	if err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string]Assertion{
		"cluster": {Cluster: "/groups/prod/clusters/west", Mode: ModeImpersonate, Subject: testOID, Groups: a.Groups},
		"subject": {Cluster: testCluster, Mode: ModeImpersonate, Subject: "00000000-0000-0000-0000-000000000002", Groups: a.Groups},
		"groups":  {Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID, Groups: []string{"g1"}},
		"joined":  {Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID, Groups: []string{"g1\x00g2"}},
		"shifted": {Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID + "\x00g1", Groups: []string{"g2"}},
		"mode":    {Cluster: testCluster, Mode: ModeToken},
	} {
		tok, err := s.Reuse(other, now)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if tok == first {
			t.Errorf("a different %s got the same assertion", name)
		}
	}

	// The cache stays bounded.
	for i := range 2 * assertionCacheSize {
		if _, err := s.Reuse(Assertion{Cluster: fmt.Sprintf("/groups/g/clusters/c%d", i), Mode: ModeToken}, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(s.reuse.m); n > assertionCacheSize {
		t.Errorf("%d assertions remembered, at most %d", n, assertionCacheSize)
	}
}

func TestAssertionVerifiedOnce(t *testing.T) {
	key := seededKey(1)
	s := newSigner(t, key)
	now := time.Unix(1_800_000_000, 0)
	v, err := NewAssertionVerifier(testHub, key.Public().(ed25519.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	tok := mustSign(t, s, Assertion{Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID, Groups: []string{"g1"}}, now)
	a, err := v.Verify(tok, testCluster, now)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.verified.m) != 1 {
		t.Fatalf("%d verified assertions remembered, want 1", len(v.verified.m))
	}
	again, err := v.Verify(tok, testCluster, now.Add(10*time.Second))
	if err != nil || again.Subject != a.Subject || again.ID != a.ID {
		t.Errorf("a remembered assertion: %+v, %v; want %+v", again, err, a)
	}
	// A remembered assertion is still held to its audience and time.
	if _, err := v.Verify(tok, "/groups/prod/clusters/west", now); !errors.Is(err, ErrWrongAudience) {
		t.Errorf("remembered assertion for another cluster: %v, want ErrWrongAudience", err)
	}
	if _, err := v.Verify(tok, testCluster, now.Add(DefaultAssertionLifetime+AssertionLeeway+time.Second)); !errors.Is(err, ErrExpired) {
		t.Errorf("remembered assertion past its expiry: %v, want ErrExpired", err)
	}
	if _, err := v.Verify(tok, testCluster, now.Add(-AssertionLeeway-time.Second)); !errors.Is(err, ErrNotYetValid) {
		t.Errorf("remembered assertion before its iat: %v, want ErrNotYetValid", err)
	}
	// A changed copy is another token: verified in full, and refused.
	payloadEnd := strings.LastIndexByte(tok, '.')
	for _, tampered := range []string{tok + "x", tok[:payloadEnd-1] + "A" + tok[payloadEnd:], tok[:payloadEnd-1] + "B" + tok[payloadEnd:]} {
		if tampered == tok {
			continue
		}
		if _, err := v.Verify(tampered, testCluster, now); err == nil {
			t.Errorf("a changed copy of a remembered assertion was accepted: %s", tampered)
		}
	}
	// Refusals are not remembered; the cache stays bounded.
	if len(v.verified.m) != 1 {
		t.Errorf("%d verified assertions remembered after refusals, want 1", len(v.verified.m))
	}
	for i := range assertionCacheSize + 10 {
		tok := mustSign(t, s, Assertion{Cluster: testCluster, Mode: ModeToken, ID: fmt.Sprint(i)}, now)
		if _, err := v.Verify(tok, testCluster, now); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(v.verified.m); n > assertionCacheSize {
		t.Errorf("%d verified assertions remembered, at most %d", n, assertionCacheSize)
	}
}

// BenchmarkAssertion compares signing and verifying each request's
// assertion with reusing a signed one and recognising a verified one.
func BenchmarkAssertion(b *testing.B) {
	key := seededKey(1)
	now := time.Unix(1_800_000_000, 0)
	a := Assertion{Cluster: testCluster, Mode: ModeImpersonate, Subject: testOID, Groups: []string{"g1", "g2"}}
	b.Run("sign", func(b *testing.B) {
		s := newSigner(b, key)
		for b.Loop() {
			if _, err := s.Sign(a, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("reuse", func(b *testing.B) {
		s := newSigner(b, key)
		for b.Loop() {
			if _, err := s.Reuse(a, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	tok := mustSign(b, newSigner(b, key), a, now)
	b.Run("verify", func(b *testing.B) {
		for b.Loop() {
			v, _ := NewAssertionVerifier(testHub, key.Public().(ed25519.PublicKey))
			if _, err := v.Verify(tok, testCluster, now); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("verified", func(b *testing.B) {
		v, _ := NewAssertionVerifier(testHub, key.Public().(ed25519.PublicKey))
		for b.Loop() {
			if _, err := v.Verify(tok, testCluster, now); err != nil {
				b.Fatal(err)
			}
		}
	})
}
