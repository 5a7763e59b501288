package rig

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/podprog"
)

// The test binary doubles as the program of the rig's pods (package podprog).
func TestMain(m *testing.M) {
	podprog.Main()
	os.Exit(m.Run())
}

func TestRig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	bins, err := Build(ctx, BuildOptions{Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	cluster, err := Start(ctx, Config{Binaries: bins, Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	startTime := time.Since(began)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cluster.Stop()
		}
	})
	t.Logf("rig ready in %s", startTime.Round(time.Millisecond))

	kubectl := func(t *testing.T, args ...string) string {
		t.Helper()
		out, err := cluster.Kubectl(ctx, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ns := "rig-test"
	kubectl(t, "create", "namespace", ns)

	t.Run("service account token authenticates", func(t *testing.T) {
		kubectl(t, "create", "serviceaccount", "demo-user", "-n", ns)
		kubectl(t, "create", "clusterrolebinding", "demo-user-binding", "--clusterrole=cluster-admin", "--serviceaccount="+ns+":demo-user")
		secret := fmt.Sprintf(`{"apiVersion":"v1","kind":"Secret","metadata":{"name":"demo-user-secret","namespace":%q,
			"annotations":{"kubernetes.io/service-account.name":"demo-user"}},"type":"kubernetes.io/service-account-token"}`, ns)
		apply := cluster.Kubectl(ctx, "apply", "-f", "-")
		apply.Stdin = strings.NewReader(secret)
		if out, err := apply.CombinedOutput(); err != nil {
			t.Fatalf("create token secret: %v\n%s", err, out)
		}
		var token string
		poll(t, ctx, "the token controller to fill the secret", func() bool {
			out, err := cluster.Kubectl(ctx, "get", "secret", "demo-user-secret", "-n", ns, "-o", "jsonpath={.data.token}").Output()
			if err != nil || len(out) == 0 {
				return false
			}
			b, err := base64.StdEncoding.DecodeString(string(out))
			token = string(b)
			return err == nil
		})
		// Use the token alone: a kubeconfig with no client certificate.
		whoami := exec.CommandContext(ctx, "kubectl", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}",
			"--server="+cluster.Server, "--certificate-authority="+cluster.CAFile, "--token="+token, "--kubeconfig=/dev/null")
		out, err := whoami.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl auth whoami with the token: %v\n%s", err, out)
		}
		if diff := cmp.Diff("system:serviceaccount:"+ns+":demo-user", string(out)); diff != "" {
			t.Errorf("whoami (-want +got):\n%s", diff)
		}
		// The audit log has it, as whom it was made, by the time the answer
		// came back (blocking mode).
		if !auditLogged(t, cluster.AuditLog, "/apis/authentication.k8s.io/", "system:serviceaccount:"+ns+":demo-user") {
			t.Errorf("the audit log %s has no whoami by the service account", cluster.AuditLog)
		}
		bad := exec.CommandContext(ctx, "kubectl", "get", "pods", "--server="+cluster.Server,
			"--certificate-authority="+cluster.CAFile, "--token="+token+"x", "--kubeconfig=/dev/null")
		out, err = bad.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "You must be logged in to the server") {
			t.Errorf("a corrupted token: want kubectl's message for a 401, got err=%v\n%s", err, out)
		}
	})

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := freePortT(t)
	pod := fmt.Sprintf(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"worker","namespace":%q},
		"spec":{"nodeName":%q,"restartPolicy":"Never","containers":[
		  {"name":"ticker","image":"none","command":["/bin/sh","-c","i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]},
		  {"name":"echo","image":"none","command":[%q],"env":[{"name":%q,"value":%q},{"name":%q,"value":"%d"}]}]}}`,
		ns, cluster.NodeName, self, podprog.Env, podprog.EchoServer, podprog.Port, port)
	apply := cluster.Kubectl(ctx, "apply", "-f", "-")
	apply.Stdin = strings.NewReader(pod)
	if out, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("create pod: %v\n%s", err, out)
	}
	kubectl(t, "wait", "--for=condition=Ready", "pod/worker", "-n", ns, "--timeout=60s")

	for _, tc := range []struct {
		name    string
		version string // kubectl minor version
		env     []string
	}{
		{name: "exec over WebSocket (kubectl 1.33)", version: "1.33"},
		{name: "exec over SPDY (kubectl 1.27)", version: "1.27"},
		{name: "exec over SPDY (kubectl 1.33, WebSockets off)", version: "1.33", env: []string{"KUBECTL_REMOTE_COMMAND_WEBSOCKETS=false"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin, err := FindKubectl(tc.version)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, bin, "--kubeconfig="+cluster.Kubeconfig, "exec", "-i", "worker", "-c", "ticker", "-n", ns,
				"--", "/bin/sh", "-c", "tr a-z A-Z; echo to-stderr >&2; exit 3")
			cmd.Env = append(os.Environ(), tc.env...)
			cmd.Stdin = strings.NewReader("hello from stdin\n")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err = cmd.Run()
			if diff := cmp.Diff("HELLO FROM STDIN\n", stdout.String()); diff != "" {
				t.Errorf("stdout (-want +got):\n%s\nstderr: %s", diff, stderr.String())
			}
			if !strings.Contains(stderr.String(), "to-stderr") {
				t.Errorf("stderr %q lacks the command's stderr", stderr.String())
			}
			if code := cmd.ProcessState.ExitCode(); code != 3 {
				t.Errorf("exit code = %d, want 3 (err %v)", code, err)
			}
		})
	}

	t.Run("logs -f streams", func(t *testing.T) {
		lctx, lcancel := context.WithCancel(ctx)
		defer lcancel()
		cmd := cluster.Kubectl(lctx, "logs", "-f", "worker", "-c", "ticker", "-n", ns)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer lcancel()
		// Lines written after logs -f started must arrive: watch the counter
		// climb past what was in the log when we connected.
		sc := bufio.NewScanner(out)
		tick := regexp.MustCompile(`^tick (\d+)$`)
		var first, last string
		for n := 0; n < 15 && sc.Scan(); n++ {
			m := tick.FindStringSubmatch(sc.Text())
			if m == nil {
				t.Fatalf("unexpected log line %q", sc.Text())
			}
			if first == "" {
				first = m[1]
			}
			last = m[1]
		}
		before := kubectl(t, "logs", "worker", "-c", "ticker", "-n", ns, "--tail=1")
		if first == last || last == "" {
			t.Fatalf("logs -f gave lines %s..%s, want a growing counter", first, last)
		}
		t.Logf("logs -f streamed tick %s .. %s; log now ends with %q", first, last, strings.TrimSpace(before))
	})

	t.Run("port-forward carries bytes both ways", func(t *testing.T) {
		pctx, pcancel := context.WithCancel(ctx)
		defer pcancel()
		local := freePortT(t)
		cmd := cluster.Kubectl(pctx, "port-forward", "pod/worker", "-n", ns, fmt.Sprintf("%d:%d", local, port))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer pcancel()
		sc := bufio.NewScanner(out)
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), "Forwarding from") {
			t.Fatalf("port-forward did not start: %q", sc.Text())
		}
		go io.Copy(io.Discard, out)
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		go func() {
			conn.Write(payload)
			conn.(*net.TCPConn).CloseWrite()
		}()
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		got, err := io.ReadAll(conn)
		if err != nil {
			t.Fatalf("read echo: %v (got %d bytes)", err, len(got))
		}
		if sha256.Sum256(got) != sha256.Sum256(payload) {
			t.Errorf("echo through port-forward: got %d bytes, want the %d sent", len(got), len(payload))
		}
	})

	t.Run("deployment gets a running pod", func(t *testing.T) {
		began := time.Now()
		kubectl(t, "create", "deployment", "sleeper", "-n", ns, "--image=none", "--", "/bin/sleep", "3600")
		kubectl(t, "rollout", "status", "deployment/sleeper", "-n", ns, "--timeout=60s")
		phase := kubectl(t, "get", "pods", "-n", ns, "-l", "app=sleeper", "-o", "jsonpath={.items[*].status.phase}")
		if diff := cmp.Diff("Running", phase); diff != "" {
			t.Errorf("deployment pod phase (-want +got):\n%s", diff)
		}
		t.Logf("deployment pod running %s after create", time.Since(began).Round(time.Millisecond))
	})

	var total int64
	for name, rss := range cluster.PeakRSS() {
		t.Logf("peak RSS %-24s %4d MiB", name, rss>>20)
		total += rss
	}
	t.Logf("peak RSS total %d MiB", total>>20)

	dir := cluster.Dir
	stopped = true
	if err := cluster.Stop(); err != nil {
		t.Errorf("stop: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("rig directory %s still exists after Stop (stat: %v)", dir, err)
	}
	if left := processesUnder(dir); len(left) > 0 {
		t.Errorf("processes left after Stop: %v", left)
	}
}

// processesUnder lists processes whose command line or working directory
// mentions dir.
func processesUnder(dir string) []string {
	var left []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		cwd, _ := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if bytes.Contains(cmdline, []byte(dir)) || strings.HasPrefix(cwd, dir) {
			left = append(left, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return left
}

func poll(t *testing.T, ctx context.Context, what string, ok func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func freePortT(t *testing.T) int {
	t.Helper()
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	return ports[0]
}

// testWriter sends the rig's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// auditLogged reports whether the audit log at path has an event for a
// request URI starting with uriPrefix made by user.
func auditLogged(t *testing.T, path, uriPrefix, user string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			RequestURI string `json:"requestURI"`
			User       struct {
				Username string `json:"username"`
			} `json:"user"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && strings.HasPrefix(ev.RequestURI, uriPrefix) && ev.User.Username == user {
			return true
		}
	}
	return false
}
