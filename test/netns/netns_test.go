package netns

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
)

// The test binary is its own inside program: run with helperEnv set, TestMain
// acts as the helper named by its value instead of running tests.
const (
	helperEnv   = "TETHER_NETNS_HELPER" // "serve" or "dial"
	helperAddr  = "TETHER_NETNS_ADDR"   // dial: address to dial
	helperLocal = "TETHER_NETNS_LOCAL"  // dial: local IP to dial from, optional
	helperSend  = "TETHER_NETNS_SEND"   // dial: line to send first, optional

	insideGreeting = "hello from inside"
	insideRequest  = "ping from inside"
	hostReply      = "pong from host"

	// dropTimeout is how long a host dial waits before we call the SYN
	// dropped. A refused or unreachable dial fails well within it.
	dropTimeout = 2 * time.Second
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := helperMain(mode); err != nil {
			fmt.Fprintf(os.Stderr, "netns helper %s: %v\n", mode, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// helperMain runs inside the namespace.
//
// serve: listen on 0.0.0.0, print "port N", greet every connection with
// insideGreeting, and exit when stdin reaches EOF.
//
// dial: dial helperAddr (from helperLocal if set), send helperSend if set,
// print the first line received.
func helperMain(mode string) error {
	switch mode {
	case "serve":
		ln, err := net.Listen("tcp4", "0.0.0.0:0")
		if err != nil {
			return err
		}
		go func() { // exits when the process does
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_, _ = io.WriteString(c, insideGreeting+"\n")
				_ = c.Close()
			}
		}()
		fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
		_, err = io.Copy(io.Discard, os.Stdin)
		return err
	case "dial":
		d := net.Dialer{Timeout: dropTimeout}
		if local := os.Getenv(helperLocal); local != "" {
			ip, err := netip.ParseAddr(local)
			if err != nil {
				return err
			}
			d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
		}
		c, err := d.Dial("tcp", os.Getenv(helperAddr))
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			return err
		}
		if send := os.Getenv(helperSend); send != "" {
			if _, err := io.WriteString(c, send+"\n"); err != nil {
				return err
			}
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		_, err = os.Stdout.WriteString(line)
		return err
	default:
		return fmt.Errorf("unknown mode")
	}
}

// helperCmd runs this test binary inside ns as the helper mode, with env added.
func helperCmd(t *testing.T, ctx context.Context, ns *Namespace, mode string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := ns.Command(ctx, exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode,
		// Under -race a process sleeps a second at exit by default; the
		// helpers have nothing left to report by then.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	cmd.Env = append(cmd.Env, env...)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// dialInside runs a dial helper inside ns and returns what it printed.
func dialInside(t *testing.T, ns *Namespace, addr netip.AddrPort, env ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := helperCmd(t, ctx, ns, "dial", append([]string{helperAddr + "=" + addr.String()}, env...)...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return strings.TrimSuffix(string(out), "\n"), nil
}

// startInsideServer starts a serve helper inside ns and returns its port once
// it listens. The server stops when the test's cleanups run, before ns closes.
func startInsideServer(t *testing.T, ns *Namespace) uint16 {
	t.Helper()
	// Not t.Context(): that is cancelled, killing the server, before the
	// cleanup below can stop it in order.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := helperCmd(t, ctx, ns, "serve")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdinR, stdoutW, &stderr
	err = cmd.Start()
	stdinR.Close()
	stdoutW.Close()
	if err != nil {
		cancel()
		t.Fatalf("start inside server: %v", err)
	}
	t.Cleanup(func() {
		defer cancel()
		defer stdoutR.Close()
		stdinW.Close() // EOF tells the server to exit
		if err := cmd.Wait(); err != nil {
			t.Errorf("inside server: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
		}
	})
	if err := stdoutR.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdoutR).ReadString('\n')
	if err != nil {
		t.Fatalf("read inside server's port: %v", err)
	}
	port, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimSpace(line), "port "), 10, 16)
	if err != nil {
		t.Fatalf("inside server's first line %q: %v", line, err)
	}
	return uint16(port)
}

// TestInboundDropped proves the firewall: a server inside that inside
// processes reach is not reachable from the host, and the host's SYN is
// dropped (the dial times out) rather than refused.
func TestInboundDropped(t *testing.T) {
	ns := New(t, Config{})
	extra, err := ns.AddInsideAddr(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	port := startInsideServer(t, ns)

	tests := []struct {
		name string
		ip   netip.Addr
	}{
		{name: "InsideIP", ip: ns.InsideIP()},
		{name: "extra inside address", ip: extra},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := netip.AddrPortFrom(tt.ip, port)

			d := net.Dialer{Timeout: dropTimeout}
			c, err := d.DialContext(t.Context(), "tcp", addr.String())
			if err == nil {
				c.Close()
			}
			var nerr net.Error
			if !errors.As(err, &nerr) || !nerr.Timeout() {
				t.Errorf("dial %s from the host: got error %v, want a timeout (SYN dropped, not refused)", addr, err)
			}

			// The same server, asked from inside after the host gave up, answers.
			got, err := dialInside(t, ns, addr)
			if err != nil {
				t.Fatalf("dial %s from inside: %v", addr, err)
			}
			if diff := cmp.Diff(insideGreeting, got); diff != "" {
				t.Errorf("greeting read inside (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOutboundAllowed proves that the inside opens connections to a server on
// HostIP, from each of its addresses, and that bytes flow both ways.
func TestOutboundAllowed(t *testing.T) {
	ns := New(t, Config{})
	extra, err := ns.AddInsideAddr(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		local netip.Addr
	}{
		{name: "from InsideIP", local: ns.InsideIP()},
		{name: "from extra inside address", local: extra},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ns.HostIP(), 0)))
			if err != nil {
				t.Fatal(err)
			}
			served := make(chan exchange, 1)
			go func() { served <- serveOnce(ln) }()

			got, dialErr := dialInside(t, ns, ln.Addr().(*net.TCPAddr).AddrPort(),
				helperLocal+"="+tt.local.String(), helperSend+"="+insideRequest)
			ln.Close() // unblocks Accept if the helper never connected
			ex := <-served
			if dialErr != nil {
				t.Fatalf("dial host from inside: %v", dialErr)
			}
			if ex.Err != nil {
				t.Fatalf("host server: %v", ex.Err)
			}
			ex.Reply = got
			want := exchange{From: tt.local, Request: insideRequest, Reply: hostReply}
			if diff := cmp.Diff(want, ex, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("exchange (-want +got):\n%s", diff)
			}
		})
	}
}

// TestOutboundRefusedFast proves a host's RST reaches the inside, so a dial
// to a closed host port fails at once instead of timing out.
func TestOutboundRefusedFast(t *testing.T) {
	ns := New(t, Config{})
	ln, err := net.ListenTCP("tcp4", net.TCPAddrFromAddrPort(netip.AddrPortFrom(ns.HostIP(), 0)))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close() // the port is now closed

	_, err = dialInside(t, ns, addr)
	const want = "connect: connection refused"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("dial %s from inside: got error %v, want one containing %q", addr, err, want)
	}
}

// TestOutboundConfined proves the output chain keeps IPv4 inside the range.
// The stray destination, 192.0.2.1 (TEST-NET-1), is routed to a veth pair
// whose both ends are inside the namespace, with a static neighbour entry, so
// a packet that got past the firewall would still never leave the namespace,
// and nothing would answer it: the dial would time out. The firewall's reject
// makes it fail at once with EHOSTUNREACH instead.
func TestOutboundConfined(t *testing.T) {
	ns := New(t, Config{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"link", "add", "stray0", "type", "veth", "peer", "name", "stray1"},
		{"link", "set", "stray0", "up"},
		{"link", "set", "stray1", "up"},
		{"route", "add", "192.0.2.0/24", "dev", "stray0"},
		{"neigh", "add", "192.0.2.1", "lladdr", "02:00:00:00:00:01", "dev", "stray0"},
	} {
		if err := ns.ip(ctx, append([]string{"-n", ns.Name()}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	_, err := dialInside(t, ns, netip.MustParseAddrPort("192.0.2.1:80"))
	const want = "connect: no route to host"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("dial 192.0.2.1:80 from inside: got error %v, want one containing %q", err, want)
	}
}

// exchange is what one connection from the inside to the host carried.
type exchange struct {
	From    netip.Addr // the inside address the host saw
	Request string     // the line the host read
	Reply   string     // the line the inside read
	Err     error
}

// serveOnce accepts one connection on ln, reads a line, answers hostReply.
func serveOnce(ln *net.TCPListener) exchange {
	if err := ln.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		return exchange{Err: err}
	}
	c, err := ln.AcceptTCP()
	if err != nil {
		return exchange{Err: err}
	}
	defer c.Close()
	ex := exchange{From: c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()}
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		ex.Err = err
		return ex
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		ex.Err = err
		return ex
	}
	ex.Request = strings.TrimSuffix(line, "\n")
	_, ex.Err = io.WriteString(c, hostReply+"\n")
	return ex
}

// TestClose proves Close leaves no namespace or veth behind, and is idempotent.
func TestClose(t *testing.T) {
	ns, err := Create(t.Context(), Config{NamePrefix: "tether-close"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	host, inside := ns.block.hostLink(), ns.block.insideLink()
	if !slices.Contains(namespaces(t), ns.Name()) {
		t.Errorf("ip netns list does not show %s after Create", ns.Name())
	}
	if _, err := net.InterfaceByName(host); err != nil {
		t.Errorf("host veth %s after Create: %v", host, err)
	}

	if err := ns.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if err := ns.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if slices.Contains(namespaces(t), ns.Name()) {
		t.Errorf("ip netns list still shows %s after Close", ns.Name())
	}
	for _, link := range []string{host, inside} {
		if _, err := net.InterfaceByName(link); err == nil {
			t.Errorf("link %s still exists after Close", link)
		}
	}
	if _, err := ns.AddInsideAddr(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("AddInsideAddr after Close: got %v, want ErrClosed", err)
	}
}

// namespaces lists the names `ip netns list` shows.
func namespaces(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0]) // "NAME (id: N)"
		}
	}
	return names
}

// TestCreateConcurrent proves concurrent Creates get distinct blocks and names.
func TestCreateConcurrent(t *testing.T) {
	const n = 4
	var (
		wg   sync.WaitGroup
		nss  [n]*Namespace
		errs [n]error
	)
	for i := range n {
		wg.Go(func() { nss[i], errs[i] = Create(t.Context(), Config{NamePrefix: "tether-conc"}) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("create %d: %v", i, errs[i])
			continue
		}
		t.Cleanup(func() {
			if err := nss[i].Close(); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		return
	}
	names := map[string]bool{}
	ips := map[netip.Addr]bool{}
	for _, ns := range nss {
		names[ns.Name()] = true
		ips[ns.InsideIP()] = true
	}
	if len(names) != n || len(ips) != n {
		t.Errorf("%d namespaces got %d names and %d inside IPs, want all distinct", n, len(names), len(ips))
	}
}

func TestAddressing(t *testing.T) {
	type got struct {
		Prefix, Host, Inside, FirstExtra, LastExtra string
		HostLink, InsideLink, Name                  string
	}
	tests := []struct {
		name  string
		block block
		want  got
	}{
		{name: "first block", block: 0, want: got{
			Prefix: "10.213.0.0/29", Host: "10.213.0.1", Inside: "10.213.0.2", FirstExtra: "10.213.0.3", LastExtra: "10.213.0.6",
			HostLink: "tth-0000", InsideLink: "tti-0000", Name: "tether-0000",
		}},
		{name: "crosses an octet", block: 33, want: got{
			Prefix: "10.213.1.8/29", Host: "10.213.1.9", Inside: "10.213.1.10", FirstExtra: "10.213.1.11", LastExtra: "10.213.1.14",
			HostLink: "tth-0021", InsideLink: "tti-0021", Name: "tether-0021",
		}},
		{name: "last block", block: numBlocks - 1, want: got{
			Prefix: "10.213.255.248/29", Host: "10.213.255.249", Inside: "10.213.255.250", FirstExtra: "10.213.255.251", LastExtra: "10.213.255.254",
			HostLink: "tth-1fff", InsideLink: "tti-1fff", Name: "tether-1fff",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.block
			g := got{
				Prefix: b.prefix().String(), Host: b.hostIP().String(), Inside: b.insideIP().String(),
				FirstExtra: b.extraIP(0).String(), LastExtra: b.extraIP(maxExtra - 1).String(),
				HostLink: b.hostLink(), InsideLink: b.insideLink(), Name: b.nsName(defaultPrefix),
			}
			if diff := cmp.Diff(tt.want, g); diff != "" {
				t.Errorf("block %d (-want +got):\n%s", b, diff)
			}
		})
	}
}

// TestBlocksTileTheRange checks every block's addresses stay inside its own
// /29, inside 10.213.0.0/16, and link names fit IFNAMSIZ.
func TestBlocksTileTheRange(t *testing.T) {
	rng := netip.MustParsePrefix("10.213.0.0/16")
	seen := map[netip.Prefix]bool{}
	for i := range numBlocks {
		b := block(i)
		p := b.prefix()
		addrs := []netip.Addr{b.hostIP(), b.insideIP(), b.extraIP(0), b.extraIP(maxExtra - 1)}
		ok := rng.Contains(p.Addr()) && p.Bits() == blockBits && !seen[p] &&
			len(b.hostLink()) < 16 && len(b.insideLink()) < 16 &&
			!slices.ContainsFunc(addrs, func(a netip.Addr) bool {
				return !p.Contains(a) || a == p.Addr() || a == lastAddr(p)
			})
		if !ok {
			t.Fatalf("block %d: prefix %s, addresses %v, links %s %s: outside its /29 or the range, or a duplicate", i, p, addrs, b.hostLink(), b.insideLink())
		}
		seen[p] = true
	}
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= 1<<(32-p.Bits()) - 1
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func TestConfigRejected(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{name: "prefix with a slash", cfg: Config{NamePrefix: "a/b"}, want: "name prefix"},
		{name: "prefix with a space", cfg: Config{NamePrefix: "a b"}, want: "name prefix"},
		{name: "prefix too long", cfg: Config{NamePrefix: strings.Repeat("x", 33)}, want: "name prefix"},
		{name: "negative timeout", cfg: Config{CommandTimeout: -time.Second}, want: "negative command timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns, err := Create(t.Context(), tt.cfg)
			if err == nil {
				ns.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create(%+v): got error %v, want one containing %q", tt.cfg, err, tt.want)
			}
		})
	}
}

// TestMissingTool proves a missing ip or nft names the package to install.
func TestMissingTool(t *testing.T) {
	tests := []struct {
		name  string
		tools []string // put in PATH
		want  string
	}{
		{name: "no ip", tools: []string{"nft"}, want: "ip not found in PATH: install the iproute2 package"},
		{name: "no nft", tools: []string{"ip"}, want: "nft not found in PATH: install the nftables package"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, tool := range tt.tools {
				p, err := exec.LookPath(tool)
				if err != nil {
					t.Fatalf("this test needs %s itself: %v", tool, err)
				}
				if err := os.Symlink(p, filepath.Join(dir, tool)); err != nil {
					t.Fatal(err)
				}
			}
			t.Setenv("PATH", dir)
			ns, err := Create(t.Context(), Config{})
			if err == nil {
				ns.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Create: got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
