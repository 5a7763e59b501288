// Package netns runs test processes in a Linux network namespace that no
// connection can enter, so tests prove that a component needs no inbound port.
//
// A Namespace is joined to the host (root) network namespace by one veth pair
// and guarded by an nftables firewall inside it:
//
//	 host (root) namespace                inside namespace <prefix>-XXXX
//	+-------------------------+          +-------------------------------+
//	|  hub, kubectl,          |          |  kube-apiserver, agent, ...   |
//	|  servers on HostIP      |          |  lo up                        |
//	|                         |   veth   |  default route via HostIP     |
//	|  tth-XXXX  HostIP .1 ===|==========|=== tti-XXXX  InsideIP .2      |
//	|                         |          |  (extra addresses .3 to .6)   |
//	+-------------------------+          +-------------------------------+
//
//	inside  ---- new connection ---->  host      allowed, replies accepted
//	inside  <--- new connection -----  host      dropped: no RST, no ICMP,
//	                                             the dialer times out
//	inside  ---- to any IPv4 address outside     rejected before it leaves:
//	             10.213.0.0/16 or loopback       "no route to host"
//
// The firewall is one nftables table, "inet tether", in the inside namespace:
// its input chain has policy drop and accepts only loopback traffic and
// packets of connections the inside opened (ct state established,related);
// its output chain accepts everything but IPv4 bound outside 10.213.0.0/16
// (see below). ICMP gets no exception: an echo request toward the inside is
// dropped like a TCP SYN. Answers to the inside's own connections are
// accepted, among them a host's RST (a dial from the inside to a closed host
// port fails fast with "connection refused") and "related" ICMP errors such
// as fragmentation needed. IPv6 is filtered by the same table; the pair
// carries no IPv6 addresses but the automatic link-local ones.
//
// Addresses come from 10.213.0.0/16, which this package treats as its own:
// each Namespace claims one /29 block in it (see block.go). Nothing is routed
// beyond the host: this package neither enables forwarding nor sets up NAT.
// Because the inside's default route points at the host, a host that forwards
// anyway (net.ipv4.ip_forward=1) would pass on a stray packet, so the output
// chain rejects IPv4 to anywhere but loopback and 10.213.0.0/16 with an ICMP
// "administratively prohibited" delivered locally: a program inside that
// dials elsewhere fails at once with "no route to host" (EHOSTUNREACH), and
// no packet leaves the namespace.
//
// Creating a Namespace needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and the
// tools ip (Debian package iproute2) and nft (package nftables).
//
// A test process killed before its cleanup ran (for example by go test's
// -timeout) leaves its namespace and veth behind; they only occupy one block
// of 8,192. List them with `ip netns list` and `ip -br link show type veth`,
// and delete them with `ip netns del NAME` and `ip link del tth-XXXX`.
package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config configures Create. The zero value is ready to use.
type Config struct {
	// NamePrefix starts the namespace name, which is NamePrefix, a dash and
	// four hex digits naming the namespace's address block, for example
	// "tether-01a3". Empty means "tether". 1 to 32 characters from
	// [A-Za-z0-9_-].
	NamePrefix string

	// CommandTimeout bounds each ip or nft command that Create, AddInsideAddr
	// and Close run. Zero means 10 seconds; negative is an error.
	CommandTimeout time.Duration
}

// ErrClosed is returned by AddInsideAddr after Close.
var ErrClosed = errors.New("network namespace closed")

const (
	defaultPrefix  = "tether"
	defaultTimeout = 10 * time.Second
	// claimTries is how many random blocks Create tries before it gives up.
	// With 8,192 blocks and a handful of namespaces per test binary, a
	// collision is rare and 64 of them in a row means the range is full of
	// leftovers.
	claimTries = 64
)

// firewall is loaded into the inside namespace with `nft -f -`. It is in place
// before the inside end of the veth comes up.
const firewall = `table inet tether {
	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept
		ct state established,related accept
	}
	chain output {
		type filter hook output priority filter; policy accept;
		oif "lo" accept
		ip daddr != 10.213.0.0/16 counter reject with icmp type admin-prohibited
	}
}
`

// Namespace is a network namespace that accepts no inbound connection, joined
// to the host by a veth pair. Its methods are safe for concurrent use.
type Namespace struct {
	name    string
	block   block
	ipPath  string
	timeout time.Duration

	mu     sync.Mutex // guards the fields below
	extra  int        // extra inside addresses added so far
	closed bool
	err    error // result of the first Close
}

// Create makes a network namespace with its veth pair, addresses, default
// route and firewall, ready for Command. The caller must Close it. ctx bounds
// the whole creation; each command also has Config.CommandTimeout.
func Create(ctx context.Context, cfg Config) (*Namespace, error) {
	prefix := cfg.NamePrefix
	if prefix == "" {
		prefix = defaultPrefix
	}
	if !validPrefix(prefix) {
		return nil, fmt.Errorf("netns: name prefix %q: want 1 to 32 of [A-Za-z0-9_-]", prefix)
	}
	timeout := cfg.CommandTimeout
	switch {
	case timeout == 0:
		timeout = defaultTimeout
	case timeout < 0:
		return nil, fmt.Errorf("netns: negative command timeout %v", timeout)
	}
	ipPath, err := lookTool("ip", "iproute2")
	if err != nil {
		return nil, err
	}
	nftPath, err := lookTool("nft", "nftables")
	if err != nil {
		return nil, err
	}

	n := &Namespace{ipPath: ipPath, timeout: timeout}
	if err := n.claim(ctx, prefix); err != nil {
		return nil, fmt.Errorf("netns: %w", err)
	}
	if err := n.setUp(ctx, nftPath); err != nil {
		// ctx may be what failed; tear down regardless.
		if cerr := n.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up: %w", cerr))
		}
		return nil, fmt.Errorf("netns: set up %s: %w", n.name, err)
	}
	return n, nil
}

// claim picks a free block, creates its veth pair in the host namespace (the
// atomic claim) and then the named namespace. On success n.block and n.name
// are set and both exist.
func (n *Namespace) claim(ctx context.Context, prefix string) error {
	for range claimTries {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := block(rand.IntN(numBlocks))
		err := n.ip(ctx, "link", "add", b.hostLink(), "type", "veth", "peer", "name", b.insideLink())
		if isExists(err) {
			continue // another namespace, maybe of another process, has this block
		}
		if err != nil {
			return err
		}
		name := b.nsName(prefix)
		err = n.ip(ctx, "netns", "add", name)
		if err == nil {
			n.block, n.name = b, name
			return nil
		}
		// A leftover namespace of that name (its veth deleted by hand) makes
		// the block unusable; give it back and try another.
		if derr := n.ip(context.WithoutCancel(ctx), "link", "del", b.hostLink()); derr != nil {
			return errors.Join(err, fmt.Errorf("release block: %w", derr))
		}
		if !isExists(err) {
			return err
		}
	}
	return fmt.Errorf("no free /29 in 10.213.0.0/16 after %d tries: are leftover tth-* links or namespaces lying around? (see `ip -br link show type veth`)", claimTries)
}

// setUp moves the inside end into the namespace, loads the firewall, then
// addresses both ends, brings them up and routes the inside via the host.
func (n *Namespace) setUp(ctx context.Context, nftPath string) error {
	b := n.block
	host, inside := b.hostLink(), b.insideLink()
	steps := []struct {
		args  []string
		stdin string
	}{
		{args: []string{"link", "set", inside, "netns", n.name}},
		{args: []string{"netns", "exec", n.name, nftPath, "-f", "-"}, stdin: firewall},
		{args: []string{"addr", "add", netip.PrefixFrom(b.hostIP(), blockBits).String(), "dev", host}},
		{args: []string{"link", "set", host, "up"}},
		{args: []string{"-n", n.name, "link", "set", "lo", "up"}},
		{args: []string{"-n", n.name, "addr", "add", netip.PrefixFrom(b.insideIP(), blockBits).String(), "dev", inside}},
		{args: []string{"-n", n.name, "link", "set", inside, "up"}},
		{args: []string{"-n", n.name, "route", "add", "default", "via", b.hostIP().String(), "dev", inside}},
	}
	for _, s := range steps {
		if err := n.run(ctx, s.stdin, s.args...); err != nil {
			return err
		}
	}
	return nil
}

// Name is the namespace's name, as in `ip netns list` and `ip netns exec NAME`.
func (n *Namespace) Name() string { return n.name }

// InsideIP is the address of the inside end of the veth. Nothing outside can
// open a connection to it.
func (n *Namespace) InsideIP() netip.Addr { return n.block.insideIP() }

// HostIP is the address of the host end of the veth, in the host namespace.
// Servers that the inside must reach listen here (or on 0.0.0.0).
func (n *Namespace) HostIP() netip.Addr { return n.block.hostIP() }

// Command returns a command that runs name with args inside the namespace,
// through `ip netns exec`, which execs name in place: the process the Cmd
// starts is the program itself, so ctx cancellation and Cmd.Process signals
// reach it. The process belongs to the caller, who must stop it before Close;
// Close kills nothing.
func (n *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, n.ipPath, append([]string{"netns", "exec", n.name, name}, args...)...)
}

// AddInsideAddr adds one more address to the inside end of the veth and
// returns it, for a service that wants an address of its own (a Kubernetes
// node IP, say). The host reaches it over the veth like InsideIP, and the
// firewall drops inbound connections to it alike. Each namespace has four.
func (n *Namespace) AddInsideAddr(ctx context.Context) (netip.Addr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return netip.Addr{}, ErrClosed
	}
	if n.extra == maxExtra {
		return netip.Addr{}, fmt.Errorf("netns: %s has used all %d extra inside addresses", n.name, maxExtra)
	}
	a := n.block.extraIP(n.extra)
	if err := n.ip(ctx, "-n", n.name, "addr", "add", netip.PrefixFrom(a, blockBits).String(), "dev", n.block.insideLink()); err != nil {
		return netip.Addr{}, fmt.Errorf("netns: add inside address %s: %w", a, err)
	}
	n.extra++
	return a, nil
}

// Close deletes the namespace and the veth pair, and with them the firewall
// and addresses. Processes still running inside keep an anonymous namespace
// alive until they exit, cut off from the host; Close does not kill them.
// Close is idempotent: later calls return the first call's result.
func (n *Namespace) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return n.err
	}
	n.closed = true
	ctx := context.Background()
	// The name goes first, so that once the block is free again (veth gone)
	// no other Create can trip over a namespace of the same name.
	var errs []error
	if err := n.ip(ctx, "netns", "del", n.name); err != nil {
		errs = append(errs, err)
	}
	// Deleting the namespace usually takes the pair with it, asynchronously;
	// delete the host end anyway, for when a process still holds the namespace.
	if err := n.ip(ctx, "link", "del", n.block.hostLink()); err != nil && !isNoDevice(err) {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		n.err = fmt.Errorf("netns: close %s: %w", n.name, errors.Join(errs...))
	}
	return n.err
}

// New creates a Namespace for a test and closes it when the test ends. It
// never skips: where namespaces cannot be made (no root, no ip or nft) the
// test fails, saying why, since a skipped isolation test proves nothing.
func New(t testing.TB, cfg Config) *Namespace {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	n, err := Create(ctx, cfg)
	if err != nil {
		t.Fatalf("create network namespace (needs root and the iproute2 and nftables packages; isolation tests are not skipped): %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("%v", err)
		}
	})
	return n
}

// lookTool finds a program in PATH, or says which Debian package has it.
func lookTool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("netns: %s not found in PATH: install the %s package (apt-get install -y %s): %w", name, pkg, pkg, err)
	}
	return p, nil
}

// ip runs `ip args...`.
func (n *Namespace) ip(ctx context.Context, args ...string) error {
	return n.run(ctx, "", args...)
}

// run runs `ip args...` with stdin, within the command timeout, and returns
// a *cmdError carrying its output if it fails.
func (n *Namespace) run(ctx context.Context, stdin string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.ipPath, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C") // messages that isExists can match
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &cmdError{args: args, err: err, out: string(bytes.TrimSpace(out))}
	}
	return nil
}

// cmdError is a failed ip command with its output.
type cmdError struct {
	args []string
	err  error
	out  string
}

func (e *cmdError) Error() string {
	return fmt.Sprintf("ip %s: %v: %s", strings.Join(e.args, " "), e.err, e.out)
}

func (e *cmdError) Unwrap() error { return e.err }

// isExists reports whether err is ip's refusal to create something that
// exists: RTNETLINK "File exists" for links, "File exists" for namespaces.
func isExists(err error) bool { return cmdOutputHas(err, "File exists") }

// isNoDevice reports whether err is ip's "Cannot find device".
// isNoDevice reports whether ip found no such link: "Cannot find device"
// when the name lookup fails, "No such device" when the link went away
// between the lookup and the delete (a namespace's veth pair is removed
// asynchronously after the namespace).
func isNoDevice(err error) bool {
	return cmdOutputHas(err, "Cannot find device") || cmdOutputHas(err, "No such device")
}

func cmdOutputHas(err error, s string) bool {
	var ce *cmdError
	return errors.As(err, &ce) && strings.Contains(ce.out, s)
}
