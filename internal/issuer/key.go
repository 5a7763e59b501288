package issuer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"tether.dev/tether/internal/atomicfile"
)

// maxKeyFile bounds what LoadOrCreateKey reads.
const maxKeyFile = 64 << 10

// LoadOrCreateKey returns the issuer's signing key kept at path, a P-256
// key in a PKCS#8 PEM file. If there is no file it makes a key and writes
// it atomically with mode 0600. It refuses a file that group or others
// may read or write: whoever reads it can sign in as anyone.
func LoadOrCreateKey(path string) (*ecdsa.PrivateKey, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("issuer key: %s is not a regular file", path)
	}
	// Group read is allowed: a Kubernetes Secret mounted for a non-root
	// container is 0440 with the pod's fsGroup.
	if perm := fi.Mode().Perm(); perm&0o037 != 0 {
		return nil, fmt.Errorf("issuer key: %s has mode %#o, open to other users; run chmod 600 %s, and if others may have read it, remove it so a new key is made (every token issued so far then stops working)",
			path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("issuer key: %s is larger than %d bytes; it is not a key", path, maxKeyFile)
	}
	key, err := parseKeyPEM(b)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %s: %w", path, err)
	}
	return key, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("issuer key: %w", err)
	}
	return key, nil
}

// parseKeyPEM parses a PKCS#8 PEM P-256 private key.
func parseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block %q, want PRIVATE KEY (PKCS#8)", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("a %T, want a P-256 ECDSA key", k)
	}
	return ec, nil
}
