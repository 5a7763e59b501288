package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/net/http/httpproxy"
	"k8s.io/apimachinery/pkg/util/version"

	"tether.dev/tether/internal/agentinstall"
	"tether.dev/tether/internal/credentials"
	"tether.dev/tether/internal/hub"
)

// The outcome of one doctor check.
const (
	checkOK      = "ok"
	checkWarn    = "warn"
	checkFail    = "fail"
	checkSkipped = "skipped"
)

// Thresholds of the doctor's findings.
const (
	// stepTimeout bounds each check: one unanswered step must not hang
	// the whole diagnosis.
	stepTimeout = 10 * time.Second
	// clockWarn and clockFail bound the skew between this machine's clock
	// and the hub's. Tokens carry issue and expiry times checked with a
	// few minutes' leeway, so past clockFail they are refused.
	clockWarn = 30 * time.Second
	clockFail = 5 * time.Minute
	// certWarn is how soon before it expires a certificate of the hub's
	// chain is worth a warning.
	certWarn = 14 * 24 * time.Hour
)

// doctorCheck is one line of tether doctor, and one element of its -o
// json array.
type doctorCheck struct {
	Name string `json:"name"`
	// Status is ok, warn, fail or skipped.
	Status string `json:"status"`
	Detail string `json:"detail"`
	// Fix says what to do about a warning or failure.
	Fix string `json:"fix,omitempty"`
	// LatencyMS is how long the check's network exchange took, for the
	// checks that make one (tcp, hub api, tunnel).
	LatencyMS *int64 `json:"latencyMs,omitempty"`
}

func newDoctorCmd() *cobra.Command {
	var (
		sf          signInFlags
		out         outputFlag
		group, name string
	)
	cmd := &cobra.Command{
		Use:   "doctor [-g GROUP -n NAME]",
		Short: "Check the way to the hub, the sign-in, and with -g and -n a cluster's tunnel, one line per check",
		Long: `Check, in order, what tether and kubectl need to reach a cluster through the
hub, and say for each check ok, warn or FAIL with what was found and, when it
is not ok, how to fix it:

  hub url   the hub's URL (--hub or TETHER_HUB) and the proxy for it
  dns       the hub's host name resolves
  tcp       a TCP connection to the hub, through HTTPS_PROXY when it
            applies (the proxy's CONNECT is tested)
  tls       the TLS handshake, the certificate chain verified against
            --hub-ca (or the system's roots), its issuer and expiry
  hub api   the hub answers GET /api/v1/version
  clock     this machine's clock against the hub's (its Date header)
  version   the hub's version against this client's
  sign-in   the token of tether login (or -u): present, accepted by the
            hub, for which principal, until when

With -g and -n, also:

  cluster   the cluster is registered and Connected (or since when not)
  agent     its agent's version against the hub's, its Kubernetes version
  tunnel    GET /version through the hub's gateway with your token, as
            kubectl would: its latency and the API server's version

A check that needs an earlier one that failed is skipped, with the reason.
Exits 0 when no check failed (warnings allowed), 1 otherwise. -o json
prints the checks as a JSON array instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := out.validate(); err != nil {
				return err
			}
			if (group == "") != (name == "") {
				return usageError{errors.New("-g and -n name a cluster together: pass both to check it, or neither")}
			}
			if group != "" {
				if err := validateClusterName(group, name); err != nil {
					return err
				}
			}
			d := &doctor{cmd: cmd, sf: &sf, group: group, name: name}
			defer d.close()
			stdout := cmd.OutOrStdout()
			stream := out.format == "table" && out.query == ""
			colour := stream && colorEnabled(stdout)
			var checks []doctorCheck
			failed := 0
			for _, step := range d.steps() {
				c := d.run(cmd.Context(), step)
				if c.Status == checkFail {
					failed++
				}
				if stream {
					if _, err := io.WriteString(stdout, c.line(colour)); err != nil {
						return err
					}
				}
				checks = append(checks, c)
			}
			if !stream {
				if err := out.print(stdout, checks, func(w *tabwriter.Writer) {}); err != nil {
					return err
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d checks failed", failed, len(checks))
			}
			return nil
		},
	}
	sf.register(cmd)
	out.register(cmd.Flags())
	cmd.Flags().StringVarP(&group, "group", "g", "", "with -n: also check this cluster and its tunnel")
	cmd.Flags().StringVarP(&name, "name", "n", "", "with -g: also check this cluster and its tunnel")
	return cmd
}

// line is the check as tether doctor prints it: the mark (coloured when
// colour is on), the name, the finding, and what to do.
func (c doctorCheck) line(colour bool) string {
	mark, ansi := c.Status, ansiPlain
	switch c.Status {
	case checkOK:
		ansi = ansiGreen
	case checkWarn:
		ansi = ansiYellow
	case checkFail:
		mark, ansi = "FAIL", ansiRed
	case checkSkipped:
		mark = "skip"
	}
	s := fmt.Sprintf("%s  %-8s %s", colourCell(colour, ansi, fmt.Sprintf("%-4s", mark)), c.Name, c.Detail)
	if c.Fix != "" {
		s += "; fix: " + c.Fix
	}
	return s + "\n"
}

// doctor holds what the checks found that later ones build on. Each
// check runs with a context of its own, bounded by stepTimeout.
type doctor struct {
	cmd         *cobra.Command
	sf          *signInFlags
	group, name string

	base        *url.URL // the hub's URL, from the hub url check
	proxy       *url.URL // the proxy to the hub; nil when direct
	proxySource string   // the variable that named proxy
	resolved    bool     // dns: the host resolved here (or is an IP)
	connected   bool     // tcp: a connection was made
	conn        net.Conn // tcp: that connection, until the tls check takes it
	tlsOK       bool     // tls: the handshake verified the hub
	transport   *http.Transport
	client      *http.Client
	answered    bool // hub api: /api/v1/version answered 200
	sent, recvd time.Time
	date        string // the Date header of that answer
	hubVersion  string
	token       string           // sign-in: a bearer token the hub accepted
	cluster     *hub.ClusterView // cluster: the record, when it was read
	clusterDown bool             // cluster: not registered, or not connected
}

// doctorStep is one check: ready says whether what it needs was found,
// and needs says what that is when it was not.
type doctorStep struct {
	name  string
	needs string
	ready func() bool
	run   func(ctx context.Context) doctorCheck
}

func (d *doctor) steps() []doctorStep {
	always := func() bool { return true }
	steps := []doctorStep{
		{name: "hub url", ready: always, run: d.checkURL},
		{name: "dns", needs: "a hub URL", ready: func() bool { return d.base != nil }, run: d.checkDNS},
		{name: "tcp", needs: "the hub's address (dns)", ready: func() bool { return d.base != nil && (d.resolved || d.proxy != nil) }, run: d.checkTCP},
		{name: "tls", needs: "a TCP connection to the hub", ready: func() bool { return d.connected }, run: d.checkTLS},
		{name: "hub api", needs: "a verified TLS connection to the hub", ready: func() bool { return d.tlsOK }, run: d.checkAPI},
		{name: "clock", needs: "an answer of the hub's API", ready: func() bool { return d.answered }, run: d.checkClock},
		{name: "version", needs: "an answer of the hub's API", ready: func() bool { return d.answered }, run: d.checkVersion},
		{name: "sign-in", needs: "an answer of the hub's API", ready: func() bool { return d.answered }, run: d.checkSignIn},
	}
	if d.group == "" {
		return steps
	}
	return append(steps,
		doctorStep{name: "cluster", needs: "a sign-in the hub accepts", ready: func() bool { return d.token != "" }, run: d.checkCluster},
		doctorStep{name: "agent", needs: "the cluster's record, Connected", ready: func() bool { return d.cluster != nil && !d.clusterDown }, run: d.checkAgent},
		doctorStep{name: "tunnel", needs: "a sign-in and a connected cluster", ready: func() bool { return d.token != "" && !d.clusterDown }, run: d.checkTunnel},
	)
}

// run runs step, or skips it when what it needs is missing.
func (d *doctor) run(ctx context.Context, step doctorStep) doctorCheck {
	if !step.ready() {
		return doctorCheck{Name: step.name, Status: checkSkipped, Detail: "skipped: needs " + step.needs}
	}
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	c := step.run(ctx)
	c.Name = step.name
	return c
}

func (d *doctor) close() {
	if d.conn != nil {
		d.conn.Close()
	}
	if d.transport != nil {
		d.transport.CloseIdleConnections()
	}
}

func okCheck(format string, args ...any) doctorCheck {
	return doctorCheck{Status: checkOK, Detail: fmt.Sprintf(format, args...)}
}

func warnCheck(fix, format string, args ...any) doctorCheck {
	return doctorCheck{Status: checkWarn, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

func failCheck(fix, format string, args ...any) doctorCheck {
	return doctorCheck{Status: checkFail, Detail: fmt.Sprintf(format, args...), Fix: fix}
}

// withLatency sets the check's latency to d.
func withLatency(c doctorCheck, d time.Duration) doctorCheck {
	ms := d.Milliseconds()
	c.LatencyMS = &ms
	return c
}

func (d *doctor) checkURL(context.Context) doctorCheck {
	from := "--hub"
	if !d.cmd.Flags().Changed("hub") {
		from = "TETHER_HUB"
	}
	if d.sf.hub.url == "" {
		return failCheck("pass --hub https://HOST[:PORT] or set TETHER_HUB (the hub's --url)", "no hub URL: neither --hub nor TETHER_HUB is set")
	}
	base, err := d.sf.hub.parse()
	if err != nil {
		return failCheck("pass the hub's URL as it serves it (its --url), such as https://hub.example.com:8443", "%v", err)
	}
	d.base = base
	// Read on every call, not cached as http.ProxyFromEnvironment is, so
	// what is checked is the environment as it is now.
	cfg := httpproxy.FromEnvironment()
	proxy, err := cfg.ProxyFunc()(base)
	if err != nil {
		return failCheck("set HTTPS_PROXY to a URL such as http://proxy.example.com:3128, or unset it", "HTTPS_PROXY is not a proxy URL: %v", err)
	}
	note := "no proxy (HTTPS_PROXY is not set)"
	switch {
	case proxy != nil:
		d.proxy = proxy
		d.proxySource = "HTTPS_PROXY"
		if os.Getenv("HTTPS_PROXY") == "" {
			d.proxySource = "https_proxy"
		}
		note = fmt.Sprintf("through proxy %s (from %s)", proxy.Redacted(), d.proxySource)
	case cfg.HTTPSProxy != "":
		note = "no proxy: NO_PROXY (or a loopback host) exempts it from HTTPS_PROXY"
	}
	return okCheck("%s (from %s), %s", base, from, note)
}

func (d *doctor) checkDNS(ctx context.Context) doctorCheck {
	host := d.base.Hostname()
	if net.ParseIP(host) != nil {
		d.resolved = true
		return okCheck("%s is an IP address: nothing to resolve", host)
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err == nil {
		d.resolved = true
		shown := addrs
		if len(shown) > 3 {
			shown = shown[:3]
		}
		more := ""
		if len(addrs) > len(shown) {
			more = fmt.Sprintf(" and %d more", len(addrs)-len(shown))
		}
		return okCheck("%s resolves to %s%s", host, strings.Join(shown, ", "), more)
	}
	what := err.Error()
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		what = "no such host"
	}
	if d.proxy != nil {
		return warnCheck("nothing, if the proxy reaches the hub (next checks); else check the host name in --hub",
			"%s does not resolve here (%s), but the proxy %s resolves it for us", host, what, d.proxy.Redacted())
	}
	return failCheck("check the host name in --hub (or TETHER_HUB) and this machine's DNS (VPN, /etc/resolv.conf); behind a corporate proxy, set HTTPS_PROXY",
		"%s does not resolve: %s", host, what)
}

// hubAddr is the hub's host:port, 443 when the URL has no port.
func (d *doctor) hubAddr() string {
	port := d.base.Port()
	if port == "" {
		port = "443"
	}
	return net.JoinHostPort(d.base.Hostname(), port)
}

func (d *doctor) checkTCP(ctx context.Context) doctorCheck {
	start := time.Now()
	conn, err := d.dial(ctx)
	took := time.Since(start)
	if err != nil {
		var pe *proxyError
		switch {
		case errors.As(err, &pe):
			return failCheck(pe.fix, "%v", err)
		case d.proxy != nil:
			return failCheck(fmt.Sprintf("check %s, or add %s to NO_PROXY to connect directly", d.proxySource, d.base.Hostname()),
				"cannot reach the proxy %s: %v", d.proxy.Redacted(), err)
		case errors.Is(err, syscall.ECONNREFUSED):
			return failCheck("check the port in --hub, that the hub runs and listens there (tether hub --listen), and firewalls",
				"%s refused the connection: nothing listens there", d.hubAddr())
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return failCheck("a firewall drops the packets, or the host is down: check the network path to "+d.hubAddr()+" (or set HTTPS_PROXY)",
				"no answer from %s within %s", d.hubAddr(), stepTimeout)
		}
		return failCheck("check the network path to "+d.hubAddr(), "cannot connect to %s: %v", d.hubAddr(), err)
	}
	remote := conn.RemoteAddr().String()
	d.conn = conn // the tls check's handshake runs on it
	if d.proxy != nil {
		d.connected = true
		return withLatency(okCheck("connected through proxy %s (from %s), which answered CONNECT %s with 200", d.proxy.Redacted(), d.proxySource, d.hubAddr()), took)
	}
	d.connected = true
	if remote != d.hubAddr() {
		remote = d.hubAddr() + " (" + remote + ")"
	}
	return withLatency(okCheck("connected to %s in %s", remote, roundLatency(took)), took)
}

// proxyError is a proxy's refusal of CONNECT, with what to do.
type proxyError struct {
	msg, fix string
}

func (e *proxyError) Error() string { return e.msg }

// dial opens a connection to the hub as the HTTP client does: directly,
// or through d.proxy with CONNECT.
func (d *doctor) dial(ctx context.Context) (net.Conn, error) {
	dialer := &net.Dialer{Timeout: stepTimeout}
	if d.proxy == nil {
		return dialer.DialContext(ctx, "tcp", d.hubAddr())
	}
	proxyAddr := d.proxy.Host
	if d.proxy.Port() == "" {
		port := "80"
		if d.proxy.Scheme == "https" {
			port = "443"
		}
		proxyAddr = net.JoinHostPort(d.proxy.Hostname(), port)
	}
	switch d.proxy.Scheme {
	case "http", "https":
	default:
		return nil, &proxyError{msg: fmt.Sprintf("the proxy %s is a %s proxy, which doctor does not test", d.proxy.Redacted(), d.proxy.Scheme),
			fix: "use an http:// proxy in " + d.proxySource + ", or test the hub from a machine without it"}
	}
	conn, err := dialer.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	if d.proxy.Scheme == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: d.proxy.Hostname(), MinVersion: tls.VersionTLS12})
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS to the proxy: %w", err)
		}
		conn = tc
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	req := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: d.hubAddr()}, Host: d.hubAddr(), Header: http.Header{}}
	if u := d.proxy.User; u != nil {
		pw, _ := u.Password()
		req.Header.Set("Proxy-Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(u.Username()+":"+pw)))
	}
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("send CONNECT to the proxy: %w", err)
	}
	// The proxy says nothing more before our TLS hello: reading its
	// answer through a bufio.Reader loses no byte of the tunnel.
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("read the proxy's answer to CONNECT: %w", err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusOK:
		conn.SetDeadline(time.Time{})
		return conn, nil
	case resp.StatusCode == http.StatusProxyAuthRequired:
		conn.Close()
		return nil, &proxyError{msg: fmt.Sprintf("the proxy %s wants credentials (407) for CONNECT %s", d.proxy.Redacted(), d.hubAddr()),
			fix: fmt.Sprintf("put them in %s: http://USER:PASSWORD@%s", d.proxySource, d.proxy.Host)}
	default:
		conn.Close()
		return nil, &proxyError{msg: fmt.Sprintf("the proxy %s refused CONNECT %s: %s", d.proxy.Redacted(), d.hubAddr(), resp.Status),
			fix: fmt.Sprintf("ask the proxy's administrators to allow %s, or add %s to NO_PROXY if it is reachable directly", d.hubAddr(), d.base.Hostname())}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// trust describes what the hub's certificate is verified against.
func (d *doctor) trust() string {
	if d.sf.hub.ca != "" {
		return "the CA in " + d.sf.hub.ca
	}
	return "this machine's trusted roots"
}

func (d *doctor) checkTLS(ctx context.Context) doctorCheck {
	t, err := d.sf.hub.transport()
	if err != nil {
		return failCheck("pass --hub-ca (or TETHER_HUB_CA) a readable PEM file of the CA that signed the hub's certificate (DATA_DIR/tls.crt of a hub that made its own)", "%v", err)
	}
	conn := d.conn
	d.conn = nil
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	host := d.base.Hostname()
	tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: t.TLSClientConfig.RootCAs, MinVersion: tls.VersionTLS12})
	defer tc.Close() // a close_notify: the hub sees a clean goodbye
	if err := tc.HandshakeContext(ctx); err != nil {
		return d.tlsFailure(err)
	}
	st := tc.ConnectionState()
	leaf := st.PeerCertificates[0]
	soonest := leaf
	for _, c := range st.VerifiedChains[0] {
		if c.NotAfter.Before(soonest.NotAfter) {
			soonest = c
		}
	}
	// What later checks send goes through the transport the commands
	// use, with the proxy decided here.
	proxy := d.proxy
	t.Proxy = func(*http.Request) (*url.URL, error) { return proxy, nil }
	d.transport = t
	d.client = &http.Client{Transport: t, Timeout: stepTimeout}
	d.tlsOK = true
	left := time.Until(soonest.NotAfter)
	found := fmt.Sprintf("%s, certificate for %s issued by %s, verified against %s; valid until %s",
		tls.VersionName(st.Version), host, issuerName(leaf), d.trust(), leaf.NotAfter.UTC().Format(time.RFC3339))
	if left < certWarn {
		which := "the hub's certificate"
		if soonest != leaf {
			which = "the certificate of " + certName(soonest) + " in the hub's chain"
		}
		return warnCheck("renew "+which+" before it expires (a hub that made its own: remove DATA_DIR/tls.crt and tls.key and restart it, then hand out the new CA)",
			"%s; %s expires in %s", found, which, roundDays(left))
	}
	return okCheck("%s", found)
}

// tlsFailure explains a failed handshake with the hub.
func (d *doctor) tlsFailure(err error) doctorCheck {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknown) && unknown.Cert != nil:
		fix := "pass --hub-ca FILE (or set TETHER_HUB_CA) with the CA that signed the hub's certificate; a hub that made its own keeps it in DATA_DIR/tls.crt"
		if d.sf.hub.ca != "" {
			fix = fmt.Sprintf("--hub-ca %s is not the hub's CA: pass the CA that signed the hub's certificate (issuer %s); a hub that made its own keeps it in DATA_DIR/tls.crt", d.sf.hub.ca, issuerName(unknown.Cert))
		}
		return failCheck(fix, "the hub's certificate for %s, issued by %s, is not signed by %s", certName(unknown.Cert), issuerName(unknown.Cert), d.trust())
	case errors.As(err, &hostname) && hostname.Certificate != nil:
		names := certNames(hostname.Certificate)
		return failCheck(fmt.Sprintf("use a hub URL with one of the certificate's names, or add %s to the hub's certificate (tether hub --tls-san %s)", hostname.Host, hostname.Host),
			"the hub's certificate is for %s, not %s", strings.Join(names, ", "), hostname.Host)
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired && invalid.Cert != nil:
		c := invalid.Cert
		return failCheck("renew the hub's certificate; if this machine's clock is wrong, set it right (timedatectl set-ntp true)",
			"the certificate of %s is valid from %s to %s, and this machine's time is %s",
			certName(c), c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), time.Now().UTC().Format(time.RFC3339))
	case errors.As(err, &record):
		return failCheck("the hub serves HTTPS only: check the port in --hub, and that no plain-HTTP load balancer sits on it",
			"%s does not speak TLS: %v", d.hubAddr(), err)
	}
	return failCheck("check that "+d.hubAddr()+" is the hub (tether hub serves TLS 1.2 or later)", "TLS handshake with %s: %v", d.hubAddr(), err)
}

// certName is what a certificate is for: its first DNS name or IP, else
// its common name.
func certName(c *x509.Certificate) string {
	if names := certNames(c); len(names) > 0 {
		return names[0]
	}
	return "(unnamed)"
}

func certNames(c *x509.Certificate) []string {
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName)
	}
	return names
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return fmt.Sprintf("%q", c.Issuer.CommonName)
	}
	if len(c.Issuer.Organization) > 0 {
		return fmt.Sprintf("%q", c.Issuer.Organization[0])
	}
	return fmt.Sprintf("%q", c.Issuer.String())
}

func roundDays(d time.Duration) string {
	if d < 0 {
		return "no time: it has expired"
	}
	if d < 48*time.Hour {
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
}

func roundLatency(d time.Duration) time.Duration {
	if d < 10*time.Millisecond {
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Millisecond)
}

// get sends a GET to the hub's path with token (if any) and returns the
// answer's status, headers and body (at most maxAnswer bytes).
func (d *doctor) get(ctx context.Context, path, token string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base.String()+path, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tether-doctor/"+Version)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	return resp, body, err
}

// statusMessage is the message of a Kubernetes Status (or of the admin
// API's errors, which share its message field), else the body itself.
func statusMessage(code int, body []byte) string {
	var st struct{ Message string }
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return st.Message
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Sprintf("HTTP %d: %s", code, msg)
}

func (d *doctor) checkAPI(ctx context.Context) doctorCheck {
	d.sent = time.Now()
	resp, body, err := d.get(ctx, "/api/v1/version", "")
	d.recvd = time.Now()
	took := d.recvd.Sub(d.sent)
	if err != nil {
		return failCheck("check that the hub runs, and that nothing between (a load balancer, a proxy) cuts HTTPS requests", "GET /api/v1/version: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return failCheck("check that --hub is the hub's URL (its --url), path included",
			"GET /api/v1/version answered %s: %s: this is not a Tether hub, or not at this path", resp.Status, statusMessage(resp.StatusCode, body))
	}
	var info hub.VersionInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return failCheck("check that --hub is the hub's URL (its --url), path included", "GET /api/v1/version answered something other than a Tether hub's version: %v", err)
	}
	d.answered = true
	d.hubVersion = info.HubVersion
	d.date = resp.Header.Get("Date")
	return withLatency(okCheck("the hub answered GET /api/v1/version in %s", roundLatency(took)), took)
}

func (d *doctor) checkClock(context.Context) doctorCheck {
	if d.date == "" {
		return warnCheck("none needed unless sign-ins fail; a proxy in between may strip the Date header", "the hub's answer has no Date header: its clock is unknown")
	}
	date, err := http.ParseTime(d.date)
	if err != nil {
		return warnCheck("none needed unless sign-ins fail", "the hub's Date header %q does not parse: %v", d.date, err)
	}
	// The Date header has whole seconds, truncated: the hub's clock read
	// somewhere in [date, date+1s) between our request and its answer.
	mid := d.sent.Add(d.recvd.Sub(d.sent) / 2)
	skew := date.Add(500 * time.Millisecond).Sub(mid)
	abs := skew.Abs()
	which := "ahead of"
	if skew < 0 {
		which = "behind"
	}
	// Past a minute, the skew is shown to 10 s: the measure is only as
	// good as the round trip and the Date header's whole seconds, and a
	// slow answer must not make one run say 2m0s and the next 2m1s.
	shown := abs.Round(time.Second)
	if abs >= time.Minute {
		shown = abs.Round(10 * time.Second)
	}
	found := fmt.Sprintf("the hub's clock is %s %s this machine's", shown, which)
	if abs < time.Second {
		found = "the hub's clock agrees with this machine's to the second"
	}
	const fix = "synchronise the clocks of this machine and the hub with NTP (timedatectl set-ntp true)"
	switch {
	case abs > clockFail:
		return failCheck(fix, "%s: tokens are issued and checked with a few minutes' leeway, so they will be refused", found)
	case abs > clockWarn:
		return warnCheck(fix, "%s: more than %s, on the way to token failures", found, clockWarn)
	}
	return okCheck("%s", found)
}

func (d *doctor) checkVersion(context.Context) doctorCheck {
	if d.hubVersion == "" {
		return warnCheck("none needed; upgrade the hub to a release that reports it", "the hub does not report its version (this client is %s)", Version)
	}
	found := fmt.Sprintf("this client is %s, the hub %s", Version, d.hubVersion)
	if !versionsComparable(Version, d.hubVersion) {
		return okCheck("%s (a development build: not compared)", found)
	}
	if w := skew("this client", Version, "the hub", d.hubVersion); w != "" {
		return warnCheck(w[strings.LastIndex(w, "; ")+2:], "%s: their major or minor versions differ", found)
	}
	return okCheck("%s", found)
}

// versionsComparable reports whether both versions parse, which development
// builds do not.
func versionsComparable(a, b string) bool {
	_, aerr := version.ParseGeneric(a)
	_, berr := version.ParseGeneric(b)
	return aerr == nil && berr == nil
}

func (d *doctor) checkSignIn(ctx context.Context) doctorCheck {
	who := "you are"
	login := "tether login"
	if d.sf.clientID != "" {
		who = "service principal " + d.sf.clientID + " is"
		login = "tether login --service-principal -u " + d.sf.clientID
	}
	src, err := d.sf.source(ctx, "", false, io.Discard)
	if err != nil {
		return failCheck("check --issuer, and the hub's sign-in setup (tether hub --oidc-issuers)", "cannot set up the sign-in: %v", err)
	}
	tok, err := src.Get(ctx)
	switch {
	case errors.Is(err, credentials.ErrLoginRequired):
		return failCheck("run "+login, "%s not signed in to %s", who, d.base.Host)
	case err != nil:
		return failCheck("run "+login+" again", "the cached sign-in cannot be used or refreshed: %v", err)
	}
	bearer, err := tok.Bearer(credentials.PresentAccessToken)
	if err != nil {
		return failCheck("run "+login+" again", "the cached sign-in holds no usable token: %v", err)
	}
	resp, body, err := d.get(ctx, "/api/v1/me", bearer)
	if err != nil {
		return failCheck("retry; see the hub api check", "GET /api/v1/me: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		return failCheck("run "+login+" again; if that does not help, see the clock check", "the hub refuses the token (%s): %s", resp.Status, statusMessage(resp.StatusCode, body))
	}
	var me hub.MeView
	if err := json.Unmarshal(body, &me); err != nil {
		return failCheck("check that --hub is a Tether hub", "GET /api/v1/me answered something unexpected: %v", err)
	}
	d.token = bearer
	until := "no stated expiry"
	if !tok.Expiry.IsZero() {
		until = fmt.Sprintf("valid until %s (refreshed when needed)", tok.Expiry.UTC().Format(time.RFC3339))
	}
	return okCheck("signed in as %q (%s %s) from %s; token %s", me.DisplayName, me.Type, me.ID, me.Issuer, until)
}

func (d *doctor) checkCluster(ctx context.Context) doctorCheck {
	d.clusterDown = true // until found Connected or unreadable
	cluster := d.group + "/" + d.name
	resp, body, err := d.get(ctx, clusterPath(d.group, d.name), d.token)
	if err != nil {
		return failCheck("retry; see the hub api check", "read cluster %s: %v", cluster, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return failCheck("check -g and -n: tether cluster list shows the clusters you may see", "no cluster %s on this hub: %s", cluster, statusMessage(resp.StatusCode, body))
	case http.StatusForbidden:
		d.clusterDown = false
		return warnCheck(fmt.Sprintf("none needed to use it; to see its status, ask an Owner for the Reader role at %s", clusterScope(d.group, d.name)),
			"you may not read the record of cluster %s (%s); the tunnel check tells whether you can reach it", cluster, statusMessage(resp.StatusCode, body))
	default:
		return failCheck("retry; if it persists, the hub's logs say why", "read cluster %s: %s", cluster, statusMessage(resp.StatusCode, body))
	}
	var v hub.ClusterView
	if err := json.Unmarshal(body, &v); err != nil {
		return failCheck("check that --hub is a Tether hub", "read cluster %s: unexpected answer: %v", cluster, err)
	}
	d.cluster = &v
	lastErr := ""
	if v.LastError != "" {
		lastErr = "; the agent last reported: " + v.LastError
	}
	logs := fmt.Sprintf("kubectl -n %s get pods and kubectl -n %s logs deploy/%s, in the cluster", agentinstall.DefaultNamespace, agentinstall.DefaultNamespace, agentinstall.Name)
	switch v.Status {
	case hub.StatusConnected:
		d.clusterDown = false
		return okCheck("%s is Connected (last heartbeat %s, location %s)", cluster, seenAgo(v.LastSeenAt), v.Location)
	case hub.StatusConnecting:
		return failCheck(fmt.Sprintf("install its agent: tether cluster connect -g %s -n %s with a kubeconfig for the cluster; if it is installed, see %s", d.group, d.name, logs),
			"%s is Connecting: registered, but its agent has never connected%s", cluster, lastErr)
	case hub.StatusOffline:
		return failCheck("check the agent: "+logs+"; it needs to reach "+d.base.Host,
			"%s is Offline since %s (%s)%s", cluster, v.LastSeenAt.UTC().Format(time.RFC3339), seenAgo(v.LastSeenAt), lastErr)
	case hub.StatusExpired:
		return failCheck(fmt.Sprintf("enroll the agent again: tether cluster connect -g %s -n %s (or a new join token: tether cluster join-token -g %s -n %s)", d.group, d.name, d.group, d.name),
			"%s is Expired: its agent key went unused too long and the hub no longer accepts it%s", cluster, lastErr)
	}
	return failCheck("upgrade this client (tether version -g -n shows the versions)", "%s has status %q, unknown to this client%s", cluster, v.Status, lastErr)
}

func clusterScope(group, name string) string { return "/groups/" + group + "/clusters/" + name }

// seenAgo says how long ago t was, "never" for the zero time.
func seenAgo(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return time.Since(t).Round(time.Second).String() + " ago"
}

func (d *doctor) checkAgent(context.Context) doctorCheck {
	v := d.cluster
	kube := "Kubernetes " + orDash(v.KubernetesVersion)
	if v.NodeCount >= 0 {
		kube += fmt.Sprintf(", %s", plural(v.NodeCount, "node"))
	}
	if v.AgentVersion == "" {
		return warnCheck("none needed; an agent older than this hub does not report it: upgrade it (tether cluster connect again)", "the agent has not reported its version; %s", kube)
	}
	found := fmt.Sprintf("agent %s, hub %s; %s", v.AgentVersion, orDash(d.hubVersion), kube)
	if !versionsComparable(v.AgentVersion, d.hubVersion) {
		return okCheck("%s (a development build: not compared)", found)
	}
	if w := skew("the hub", d.hubVersion, "the agent", v.AgentVersion); w != "" {
		return warnCheck(w[strings.LastIndex(w, "; ")+2:], "%s: their major or minor versions differ", found)
	}
	return okCheck("%s", found)
}

func (d *doctor) checkTunnel(ctx context.Context) doctorCheck {
	path := strings.TrimPrefix(gatewayURL(d.base, d.group, d.name).Path, d.base.Path) + "/version"
	start := time.Now()
	resp, body, err := d.get(ctx, path, d.token)
	took := time.Since(start)
	if err != nil {
		return failCheck("retry; see the cluster check", "GET %s: %v", path, err)
	}
	msg := statusMessage(resp.StatusCode, body)
	logs := fmt.Sprintf("kubectl -n %s logs deploy/%s, in the cluster", agentinstall.DefaultNamespace, agentinstall.Name)
	switch {
	case resp.StatusCode == http.StatusOK:
		var info struct {
			GitVersion string `json:"gitVersion"`
		}
		if err := json.Unmarshal(body, &info); err != nil || info.GitVersion == "" {
			return withLatency(warnCheck("check what answers at "+path, "GET /version answered in %s, but not with a Kubernetes version: %s", roundLatency(took), msg), took)
		}
		return withLatency(okCheck("GET /version through the tunnel answered in %s: Kubernetes %s", roundLatency(took), info.GitVersion), took)
	case resp.StatusCode == http.StatusForbidden && fromAPIServer(resp, msg):
		return withLatency(okCheck("GET /version through the tunnel answered in %s with the API server's 403 (its RBAC: %s): the tunnel works", roundLatency(took), msg), took)
	case resp.StatusCode == http.StatusForbidden:
		return failCheck("ask an Owner of the cluster or its group for the Cluster User role (the message says how)", "the hub refuses you the cluster: %s", msg)
	case resp.StatusCode == http.StatusUnauthorized:
		return failCheck("run tether login again", "the hub refuses your token at the gateway: %s", msg)
	case resp.StatusCode >= 500:
		return failCheck("check the agent: "+logs, "GET /version through the tunnel answered %s: %s", resp.Status, msg)
	}
	return withLatency(warnCheck("none needed if kubectl works; else see the message", "GET /version through the tunnel answered %s in %s: %s", resp.Status, roundLatency(took), msg), took)
}

// fromAPIServer tells a Kubernetes API server's answer from the hub's:
// the API server names every request with an Audit-Id header, and words
// an RBAC refusal "forbidden: User ... cannot ...".
func fromAPIServer(resp *http.Response, msg string) bool {
	return resp.Header.Get("Audit-Id") != "" || strings.HasPrefix(msg, "forbidden: ")
}
