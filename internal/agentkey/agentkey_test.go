package agentkey

import (
	"crypto/ed25519"
	"encoding/base64"
	"strconv"
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

// FuzzParse: Parse returns complete claims or an error; Verify accepts
// only a proof the key signed, for this hub, within MaxSkew, once, and then
// returns exactly the claims Parse reads. The key is fixed so that the
// seeds, signed proofs among them, stay valid in testdata.
func FuzzParse(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	now := time.Unix(1_800_000_000, 0)
	signed := func(cluster, aud string, at time.Time, nonce string) string {
		first := base64.RawURLEncoding.EncodeToString([]byte(`{"cluster":"` + cluster + `","aud":"` + aud + `","iat":` + strconv.FormatInt(at.Unix(), 10) + `,"nonce":"` + nonce + `"}`))
		return Scheme + " " + first + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(first)))
	}
	good := signed("/groups/g/clusters/c", "hub", now, "bm9uY2U")
	for _, s := range []string{
		good,
		signed("/groups/g/clusters/c", "other-hub", now, "bm9uY2U"),
		signed("/groups/g/clusters/c", "hub", now.Add(-MaxSkew-time.Second), "bm9uY2U"),
		signed("/groups/g/clusters/c", "hub", now.Add(MaxSkew), "bm9uY2U"),
		signed("", "hub", now, "bm9uY2U"),
		signed("/groups/g/clusters/c", "hub", now, `x","extra":"1`),
		strings.Replace(good, "Tether-Agent", "tether-agent", 1),
		good + "A",
		"Tether-Agent a.b", "Tether-Agent .", "Bearer x", "", "Tether-Agent e30." + strings.Repeat("A", 86),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		c, err := Parse(header)
		if err == nil && (c.Cluster == "" || c.Audience == "" || c.Nonce == "" || c.IssuedAt == 0) {
			t.Fatalf("Parse accepted incomplete claims %+v", c)
		}
		var seen Replay
		v, err := Verify(header, pub, "hub", now, &seen)
		if err != nil {
			return
		}
		first, sig, _ := strings.Cut(strings.TrimPrefix(header, Scheme+" "), ".")
		sigBytes, _ := base64.RawURLEncoding.DecodeString(sig)
		if !strings.HasPrefix(header, Scheme+" ") || !ed25519.Verify(pub, []byte(first), sigBytes) {
			t.Fatalf("Verify accepted %q, which the key did not sign", header)
		}
		if diff := cmp.Diff(c, v); diff != "" {
			t.Fatalf("Verify and Parse read %q differently (-Parse +Verify):\n%s", header, diff)
		}
		if d := now.Sub(time.Unix(v.IssuedAt, 0)); v.Audience != "hub" || d > MaxSkew || d < -MaxSkew {
			t.Fatalf("Verify accepted claims %+v at %v", v, now)
		}
		if _, err := Verify(header, pub, "hub", now, &seen); err == nil {
			t.Fatalf("Verify accepted %q twice", header)
		}
	})
}
