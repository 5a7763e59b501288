package oidcprovider

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// writeCertificates makes a CA and a server certificate for host, signed by
// it, and writes ca.crt, tls.crt and tls.key into dir. It returns the CA's
// file and PEM.
func writeCertificates(dir, host string) (caFile string, caPEM []byte, err error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "tether oidcprovider test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return "", nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", nil, err
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", nil, err
	}

	caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	caFile = filepath.Join(dir, "ca.crt")
	files := []struct {
		name string
		data []byte
	}{
		{"ca.crt", caPEM},
		{"tls.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})},
		{"tls.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return "", nil, err
		}
	}
	return caFile, caPEM, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// writeSigningKeys makes the provider's token signing keys, one RSA (RS256)
// and one P-256 (ES256), and writes them as a private JWK set. They are made
// here rather than in Node.js because Node.js 20 can deadlock exporting a
// freshly generated RSA key to JWK when garbage collection runs meanwhile
// (~KeyGenJob waits on a mutex ExportJWKRsaKey holds).
func writeSigningKeys(path string) error {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	rsaKey.Precompute()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	rsaJWK := map[string]string{
		"kty": "RSA",
		"n":   b64(rsaKey.N.Bytes()),
		"e":   b64(big.NewInt(int64(rsaKey.E)).Bytes()),
		"d":   b64(rsaKey.D.Bytes()),
		"p":   b64(rsaKey.Primes[0].Bytes()),
		"q":   b64(rsaKey.Primes[1].Bytes()),
		"dp":  b64(rsaKey.Precomputed.Dp.Bytes()),
		"dq":  b64(rsaKey.Precomputed.Dq.Bytes()),
		"qi":  b64(rsaKey.Precomputed.Qinv.Bytes()),
		"alg": "RS256",
		"use": "sig",
	}
	rsaJWK["kid"] = thumbprint(`{"e":"` + rsaJWK["e"] + `","kty":"RSA","n":"` + rsaJWK["n"] + `"}`)

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	point, err := ecKey.PublicKey.Bytes() // 0x04 || X || Y, 32 bytes each
	if err != nil {
		return err
	}
	scalar, err := ecKey.Bytes()
	if err != nil {
		return err
	}
	ecJWK := map[string]string{
		"kty": "EC",
		"crv": "P-256",
		"x":   b64(point[1:33]),
		"y":   b64(point[33:]),
		"d":   b64(scalar),
		"alg": "ES256",
		"use": "sig",
	}
	ecJWK["kid"] = thumbprint(`{"crv":"P-256","kty":"EC","x":"` + ecJWK["x"] + `","y":"` + ecJWK["y"] + `"}`)

	b, err := json.MarshalIndent(map[string]any{"keys": []map[string]string{rsaJWK, ecJWK}}, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}

// thumbprint is the RFC 7638 thumbprint of a JWK's required members, given
// in their canonical JSON form; it serves as the key ID.
func thumbprint(canonical string) string {
	sum := sha256.Sum256([]byte(canonical))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}
