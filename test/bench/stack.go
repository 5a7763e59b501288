package bench

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"tether.dev/tether/test/rig"
)

// BuildTether builds the tether binary into dir and returns its path.
func BuildTether(ctx context.Context, dir string) (string, error) {
	root, err := rig.FindRepoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "tether")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/tether")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build tether: %v\n%s", err, out)
	}
	return bin, nil
}

// Hub is a running `tether hub` process on loopback with its own data
// directory (SQLite store, self-signed certificate).
type Hub struct {
	Tether  string
	Dir     string // --data-dir
	Addr    string // 127.0.0.1:port
	URL     string // https://Addr
	CA      string // the hub's self-signed certificate
	Admin   string // the admin token file
	Args    []string
	Process *rig.Process
}

// StartHub starts a hub on a free loopback port with data in dir and more
// flags args, and waits until it is ready.
func StartHub(ctx context.Context, tether, dir string, args ...string) (*Hub, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	h := &Hub{Tether: tether, Dir: dir, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), Args: args}
	h.URL = "https://" + h.Addr
	h.CA = filepath.Join(dir, "tls.crt")
	h.Admin = filepath.Join(dir, "admin.token")
	return h, h.Start(ctx)
}

// Start starts (or restarts) the hub process and waits until /readyz is ok.
func (h *Hub) Start(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(h.Dir), 0o700); err != nil {
		return err
	}
	args := append([]string{"hub", "--listen", h.Addr, "--data-dir", h.Dir}, h.Args...)
	var err error
	cmd := exec.Command(h.Tether, args...)
	cmd.Env = pprofEnv(1)
	h.Process, err = rig.StartProcess("hub", filepath.Join(filepath.Dir(h.Dir), "hub.log"), cmd)
	if err != nil {
		return err
	}
	return h.WaitReady(ctx, 60*time.Second)
}

// WaitReady polls /readyz every 10 ms until it answers 200.
func (h *Hub) WaitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if err := h.ready(); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hub not ready within %s:\n%s", limit, h.Process.Tail(30))
		}
		select {
		case <-h.Process.Done():
			return fmt.Errorf("hub exited: %v\n%s", h.Process.Err(), h.Process.Tail(30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *Hub) ready() error {
	tc, err := h.TLS()
	if err != nil {
		return err
	}
	t := &http.Transport{TLSClientConfig: tc}
	defer t.CloseIdleConnections()
	c := &http.Client{Timeout: 2 * time.Second, Transport: t}
	resp, err := c.Get(h.URL + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz: %s", resp.Status)
	}
	return nil
}

// TLS trusts the hub's certificate (HTTP/1.1 and HTTP/2 offered).
func (h *Hub) TLS() (*tls.Config, error) {
	pemBytes, err := os.ReadFile(h.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("no certificate in %s", h.CA)
	}
	return &tls.Config{RootCAs: pool}, nil
}

// Stop stops the hub with SIGTERM (SIGKILL after grace).
func (h *Hub) Stop(grace time.Duration) error { return h.Process.Stop(syscall.SIGTERM, grace) }

// Cmd runs the tether CLI as the hub's admin.
func (h *Hub) Cmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, h.Tether, args...)
	cmd.Env = append(os.Environ(), "TETHER_HUB="+h.URL, "TETHER_HUB_CA="+h.CA, "TETHER_ADMIN_TOKEN_FILE="+h.Admin)
	return cmd
}

// CreateCluster registers group/name and returns its one-time join token.
func (h *Hub) CreateCluster(ctx context.Context, group, name string) (string, error) {
	out, err := h.Cmd(ctx, "cluster", "create", "-g", group, "-n", name, "-o", "json").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("tether cluster create: %v: %s", err, ee.Stderr)
		}
		return "", fmt.Errorf("tether cluster create: %w", err)
	}
	var created struct{ Join struct{ JoinToken string } }
	if err := json.Unmarshal(out, &created); err != nil || created.Join.JoinToken == "" {
		return "", fmt.Errorf("tether cluster create printed %q", out)
	}
	return created.Join.JoinToken, nil
}

// WaitConnected waits until the hub shows group/name connected.
func (h *Hub) WaitConnected(ctx context.Context, group, name string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		out, err := h.Cmd(ctx, "cluster", "show", "-g", group, "-n", name, "-o", "json").Output()
		var v struct{ Connected bool }
		if err == nil && json.Unmarshal(out, &v) == nil && v.Connected {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster %s/%s not connected within %s (%v)", group, name, limit, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// StartAgent starts a real `tether agent` for the kubeconfig, enrolling
// with joinToken, its state in stateDir, its log beside it.
func StartAgent(tether string, h *Hub, kubeconfig, joinToken, stateDir string) (*rig.Process, error) {
	args := []string{"agent", "--hub", h.URL, "--hub-ca", h.CA, "--state-dir", stateDir,
		"--kubeconfig", kubeconfig, "--health-listen", "127.0.0.1:0", "--join-token", joinToken}
	cmd := exec.Command(tether, args...)
	cmd.Env = pprofEnv(2)
	return rig.StartProcess("agent", stateDir+".log", cmd)
}

// ProfileEnv, when set (to a port such as 6060), has the hub serve Go's
// profiles on 127.0.0.1:PORT+1 and the agent on PORT+2 while the harness
// runs (TETHER_DEBUG_PPROF), for go tool pprof.
const ProfileEnv = "TETHER_BENCH_PPROF"

func pprofEnv(offset int) []string {
	env := os.Environ()
	if p, err := strconv.Atoi(os.Getenv(ProfileEnv)); err == nil && p > 0 {
		env = append(env, fmt.Sprintf("TETHER_DEBUG_PPROF=127.0.0.1:%d", p+offset))
	}
	return env
}

// FreePort returns a loopback TCP port nobody listens on right now.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ProcStat is a process's CPU time and memory, from /proc.
type ProcStat struct {
	CPU time.Duration // user + system
	RSS int64         // resident bytes
	HWM int64         // peak resident bytes
	// Anon is the private part of RSS: the heap, stacks and the runtime's
	// other allocations, without the executable's pages (RssFile), which
	// are page cache shared with every process running the binary.
	Anon int64
}

// clockTick is USER_HZ, the unit of /proc/PID/stat's times; 100 on Linux.
const clockTick = 100

// ReadProc reads pid's CPU time and memory.
func ReadProc(pid int) (ProcStat, error) {
	var s ProcStat
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// The command name may hold spaces: fields count from after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return s, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < 13 {
		return s, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64) // field 14 of the whole line
	stime, _ := strconv.ParseInt(fields[12], 10, 64) // field 15
	s.CPU = time.Duration(utime+stime) * time.Second / clockTick
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			s.RSS = kb << 10
		case "VmHWM":
			s.HWM = kb << 10
		case "RssAnon":
			s.Anon = kb << 10
		}
	}
	return s, sc.Err()
}

// CPUMeter measures the CPU time a set of processes use between Start and
// Stop.
type CPUMeter struct {
	pids  []int
	start []ProcStat
}

// MeterCPU starts measuring pids.
func MeterCPU(pids ...int) (*CPUMeter, error) {
	m := &CPUMeter{pids: pids}
	for _, p := range pids {
		s, err := ReadProc(p)
		if err != nil {
			return nil, err
		}
		m.start = append(m.start, s)
	}
	return m, nil
}

// Used is the CPU time each process used since MeterCPU, in pids' order,
// and their sum.
func (m *CPUMeter) Used() (each []time.Duration, total time.Duration, err error) {
	for i, p := range m.pids {
		s, err := ReadProc(p)
		if err != nil {
			return nil, 0, err
		}
		d := s.CPU - m.start[i].CPU
		each = append(each, d)
		total += d
	}
	return each, total, nil
}
