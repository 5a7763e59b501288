package agentkey

import (
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestVerify(t *testing.T) {
	key, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := Generate()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	const cluster, hub = "/groups/g/clusters/c", "hub.example:443"
	sign := func(k []byte, aud string, at time.Time) string {
		h, err := Sign(k, cluster, aud, at)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	good := sign(key, hub, now)
	tests := []struct {
		name    string
		header  string
		wantErr string
	}{
		{name: "valid", header: good},
		{name: "clock behind within skew", header: sign(key, hub, now.Add(-4*time.Minute))},
		{name: "clock ahead within skew", header: sign(key, hub, now.Add(4*time.Minute))},
		{name: "too old", header: sign(key, hub, now.Add(-6*time.Minute)), wantErr: "synchronise the clocks"},
		{name: "from the future", header: sign(key, hub, now.Add(6*time.Minute)), wantErr: "synchronise the clocks"},
		{name: "another hub", header: sign(key, "evil.example:443", now), wantErr: "not \"hub.example:443\""},
		{name: "another key", header: sign(other, hub, now), wantErr: "does not verify"},
		{name: "bearer scheme", header: "Bearer abc", wantErr: "not a Tether-Agent proof"},
		{name: "no signature", header: "Tether-Agent abc", wantErr: "malformed"},
		{name: "tampered claims", header: tamper(good), wantErr: "does not verify"},
		{name: "huge", header: "Tether-Agent " + strings.Repeat("a", 5000), wantErr: "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Verify(tt.header, key.Public().(ed25519.PublicKey), hub, now, &Replay{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if diff := cmp.Diff(cluster, c.Cluster); diff != "" {
					t.Errorf("cluster (-want +got):\n%s", diff)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReplayRefused(t *testing.T) {
	key, _ := Generate()
	now := time.Now()
	h, _ := Sign(key, "/groups/g/clusters/c", "hub", now)
	var seen Replay
	if _, err := Verify(h, key.Public().(ed25519.PublicKey), "hub", now, &seen); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(h, key.Public().(ed25519.PublicKey), "hub", now.Add(time.Second), &seen); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Fatalf("second use: err = %v, want replayed", err)
	}
	// After the window the nonce is forgotten, but then the proof is too old anyway.
	if _, err := Verify(h, key.Public().(ed25519.PublicKey), "hub", now.Add(11*time.Minute), &seen); err == nil {
		t.Fatal("an 11-minute-old proof was accepted")
	}
}

func TestKeyRoundTrip(t *testing.T) {
	key, _ := Generate()
	got, err := UnmarshalPrivateKey(MarshalPrivateKey(key))
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(got) {
		t.Error("key changed in round trip")
	}
	if _, err := UnmarshalPrivateKey([]byte("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n")); err == nil {
		t.Error("accepted a foreign PEM block")
	}
}

func tamper(h string) string {
	rest := strings.TrimPrefix(h, Scheme+" ")
	_, sig, _ := strings.Cut(rest, ".")
	c, _ := Parse(h)
	c.Cluster = "/groups/g/clusters/other"
	forged, _ := Sign(mustKey(), c.Cluster, c.Audience, time.Unix(c.IssuedAt, 0))
	forgedFirst, _, _ := strings.Cut(strings.TrimPrefix(forged, Scheme+" "), ".")
	return Scheme + " " + forgedFirst + "." + sig
}

func mustKey() []byte {
	k, err := Generate()
	if err != nil {
		panic(err)
	}
	return k
}

func FuzzParse(f *testing.F) {
	key, _ := Generate()
	good, _ := Sign(key, "/groups/g/clusters/c", "hub", time.Unix(1_800_000_000, 0))
	for _, s := range []string{good, "Tether-Agent a.b", "Tether-Agent .", "Bearer x", "", "Tether-Agent e30." + strings.Repeat("A", 86)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		c, err := Parse(header)
		if err == nil && (c.Cluster == "" || c.Nonce == "") {
			t.Errorf("Parse accepted incomplete claims %+v", c)
		}
		// Verify must never accept anything not signed by key.
		if header != good {
			if _, err := Verify(header, key.Public().(ed25519.PublicKey), "hub", time.Unix(1_800_000_000, 0), nil); err == nil && !strings.HasPrefix(header, good) {
				t.Errorf("Verify accepted %q", header)
			}
		}
	})
}
