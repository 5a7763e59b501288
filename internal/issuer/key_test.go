package issuer

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"crypto/rand"
)

func TestLoadOrCreateKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "issuer.key")
	key, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %#o, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(b), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("not a PKCS#8 PEM file:\n%s", b)
	}
	again, err := LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(key) {
		t.Error("the second load returned another key")
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left behind: %v", entries)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	rsaDER, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	ecDER, _ := x509.MarshalECPrivateKey(key)
	tests := []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"readable by others", b, 0o644, "has mode 0644, open to other users; run chmod 600"},
		{"writable by group", b, 0o620, "open to other users"},
		{"executable by group", b, 0o610, "open to other users"},
		{"not PEM", []byte("hello"), 0o600, "no PEM block"},
		{"SEC1", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), 0o600, `want PRIVATE KEY (PKCS#8)`},
		{"RSA", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: rsaDER}), 0o600, "want a P-256 ECDSA key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "issuer.key")
			if err := os.WriteFile(p, tt.content, tt.mode); err != nil {
				t.Fatal(err)
			}
			must(t, os.Chmod(p, tt.mode)) // whatever the umask
			_, err := LoadOrCreateKey(p)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("LoadOrCreateKey: %v; want an error with %q", err, tt.want)
			}
		})
	}

	t.Run("a Kubernetes Secret mount, 0440, is accepted", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "issuer.key")
		must(t, os.WriteFile(p, b, 0o440))
		must(t, os.Chmod(p, 0o440))
		if _, err := LoadOrCreateKey(p); err != nil {
			t.Errorf("LoadOrCreateKey: %v", err)
		}
	})
	t.Run("directory", func(t *testing.T) {
		if _, err := LoadOrCreateKey(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadOrCreateKey: %v", err)
		}
	})
	t.Run("missing directory", func(t *testing.T) {
		if _, err := LoadOrCreateKey(filepath.Join(t.TempDir(), "no", "issuer.key")); err == nil {
			t.Error("LoadOrCreateKey made a key in a missing directory")
		}
	})
}
