package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"tether.dev/tether/test/rig"
)

// InterceptingProxy is a real squid (Debian's squid-openssl) that
// intercepts TLS the way corporate proxies do: it answers CONNECT, then
// terminates the client's TLS with a certificate it makes on the fly,
// signed by its own CA, and opens its own TLS connection to the server.
type InterceptingProxy struct {
	// Addr is where it listens, HOST:PORT.
	Addr string
	// CAFile is the PEM certificate of its CA, what clients must trust.
	CAFile string
	// Proc is the squid process.
	Proc *rig.Process
	dir  string
}

// Close stops squid and removes its files.
func (p *InterceptingProxy) Close() {
	p.Proc.Stop(syscall.SIGKILL, 5*time.Second) // squid waits 30 s for clients on TERM
	os.RemoveAll(p.dir)
}

// StartInterceptingProxy starts squid on the host end of the cluster's
// namespace, trusting only the hub's certificate on its side. The hub is
// addressed by IP here, which squid 5 cannot match against a
// certificate's IP names, so that one error (domain mismatch) is allowed;
// the chain is still verified against the hub's certificate alone. Squid
// passes an HTTP upgrade only for protocol names listed, compared
// case-sensitively: browsers send "websocket", as Tether's agent does.
func (e *Env) StartInterceptingProxy(ctx context.Context) (*InterceptingProxy, error) {
	squid, err := exec.LookPath("squid")
	certgen := "/usr/lib/squid/security_file_certgen"
	if _, serr := os.Stat(certgen); err != nil || serr != nil {
		return nil, fmt.Errorf("the TLS-intercepting proxy test needs squid with ssl-bump (apt-get install squid-openssl; make test does it)")
	}
	pu, err := user.Lookup("proxy")
	if err != nil {
		return nil, fmt.Errorf("squid's user: %w", err)
	}
	uid, _ := strconv.Atoi(pu.Uid)
	gid, _ := strconv.Atoi(pu.Gid)
	// Outside any 0700 test directory: squid drops to the proxy user.
	dir, err := os.MkdirTemp("", "tether-squid-")
	if err != nil {
		return nil, err
	}
	p := &InterceptingProxy{dir: dir, CAFile: filepath.Join(dir, "ca.pem")}
	fail := func(err error) (*InterceptingProxy, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	os.Chmod(dir, 0o755)
	caPEM, keyPEM, err := newCA("Corporate TLS-intercepting proxy (test)")
	if err != nil {
		return fail(err)
	}
	hubCA, err := os.ReadFile(e.HubCA)
	if err != nil {
		return fail(err)
	}
	port, err := freePort(e.NS.HostIP().String())
	if err != nil {
		return fail(err)
	}
	p.Addr = net.JoinHostPort(e.NS.HostIP().String(), strconv.Itoa(port))
	conf := fmt.Sprintf(`http_port %s ssl-bump tls-cert=%[2]s/ca-bundle.pem generate-host-certificates=on dynamic_cert_mem_cache_size=4MB
sslcrtd_program %[3]s -s %[2]s/ssl_db -M 4MB
sslcrtd_children 2 startup=1
tls_outgoing_options cafile=%[2]s/hub-ca.pem
acl step1 at_step SslBump1
ssl_bump peek step1
ssl_bump bump all
acl hubByIP ssl_error SQUID_X509_V_ERR_DOMAIN_MISMATCH
sslproxy_cert_error allow hubByIP
sslproxy_cert_error deny all
http_upgrade_request_protocols WebSocket allow all
http_upgrade_request_protocols websocket allow all
http_access allow all
cache deny all
pid_filename %[2]s/squid.pid
cache_log %[2]s/cache.log
access_log stdio:%[2]s/access.log
coredump_dir %[2]s
cache_effective_user proxy
`, p.Addr, dir, certgen)
	files := map[string][]byte{
		"ca.pem": caPEM, "ca-bundle.pem": append(append([]byte{}, caPEM...), keyPEM...), "hub-ca.pem": hubCA, "squid.conf": []byte(conf),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return fail(err)
		}
	}
	os.Chmod(p.CAFile, 0o644)
	if out, err := exec.CommandContext(ctx, certgen, "-c", "-s", filepath.Join(dir, "ssl_db"), "-M", "4MB").CombinedOutput(); err != nil {
		return fail(fmt.Errorf("squid's certificate store: %v\n%s", err, out))
	}
	filepath.Walk(dir, func(path string, _ os.FileInfo, _ error) error { return os.Lchown(path, uid, gid) })
	// A service name of its own keeps its shared memory apart from any
	// other squid on the machine.
	name := make([]byte, 6)
	rand.Read(name)
	cmd := exec.Command(squid, "-N", "-n", "tether"+hex.EncodeToString(name), "-f", filepath.Join(dir, "squid.conf"))
	if p.Proc, err = rig.StartProcess("squid", filepath.Join(e.Dir, "squid.log"), cmd); err != nil {
		return fail(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return p, nil
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(dir, "cache.log"))
			p.Close()
			return nil, fmt.Errorf("squid did not listen on %s: %v\n%s", p.Addr, err, log)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's start
	}
}

// newCA makes a self-signed CA certificate and its key, PEM.
func newCA(cn string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 100))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}
