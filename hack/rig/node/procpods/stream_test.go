package procpods

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	utilexec "k8s.io/utils/exec"
)

// testIO is an api.AttachIO over buffers.
type testIO struct {
	stdin          io.Reader
	stdout, stderr *syncBuffer
	tty            bool
	resize         chan api.TermSize
}

func (t *testIO) Stdin() io.Reader { return t.stdin }
func (t *testIO) Stdout() io.WriteCloser {
	if t.stdout == nil {
		return nil
	}
	return t.stdout
}
func (t *testIO) Stderr() io.WriteCloser {
	if t.stderr == nil {
		return nil
	}
	return t.stderr
}
func (t *testIO) TTY() bool                   { return t.tty }
func (t *testIO) Resize() <-chan api.TermSize { return t.resize }

// exitCode returns the exit code carried by an exec error.
func exitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var exit utilexec.CodeExitError
	if errors.As(err, &exit) {
		return exit.Code, nil
	}
	return -1, err
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestExec(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("box", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "box")
	big := make([]byte, 6<<20)
	rand.Read(big)

	type result struct {
		Stdout, Stderr string
		Code           int
	}
	tests := []struct {
		name  string
		cmd   []string
		stdin []byte
		want  result
	}{
		{name: "stdin reaches the command and EOF ends it", cmd: []string{"/bin/sh", "-c", "tr a-z A-Z"}, stdin: []byte("hello\n"),
			want: result{Stdout: "HELLO\n"}},
		{name: "exit code and stderr", cmd: []string{"/bin/sh", "-c", "echo out; echo err >&2; exit 3"},
			want: result{Stdout: "out\n", Stderr: "err\n", Code: 3}},
		{name: "container directory and environment", cmd: []string{"/bin/sh", "-c", `echo "$HOSTNAME $PWD $HOME"`},
			want: result{Stdout: "box PODS/ns/box/main PODS/ns/box/main\n"}},
		{name: "bare command name from PATH", cmd: []string{"echo", "found"}, want: result{Stdout: "found\n"}},
		{name: "six megabytes of stdin", cmd: []string{"sha256sum"}, stdin: big, want: result{Stdout: sha(big) + "  -\n"}},
		{name: "killed by a signal", cmd: []string{"/bin/sh", "-c", "kill -9 $$"}, want: result{Code: 137}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tio := &testIO{stdin: bytes.NewReader(tc.stdin), stdout: newSyncBuffer(), stderr: newSyncBuffer()}
			err := p.RunInContainer(context.Background(), testNamespace, "box", "main", tc.cmd, tio)
			code, err := exitCode(err)
			if err != nil {
				t.Fatalf("RunInContainer: %v", err)
			}
			got := result{
				Stdout: strings.ReplaceAll(tio.stdout.String(), p.cfg.PodsDir, "PODS"),
				Stderr: tio.stderr.String(),
				Code:   code,
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("exec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("box", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "box")
	tests := []struct {
		name      string
		pod       string
		container string
		cmd       []string
	}{
		{name: "unknown pod", pod: "nope", container: "main", cmd: []string{"true"}},
		{name: "unknown container", pod: "box", container: "nope", cmd: []string{"true"}},
		{name: "missing command", pod: "box", container: "main", cmd: []string{"/no/such/command"}},
		{name: "empty command", pod: "box", container: "main"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tio := &testIO{stdout: newSyncBuffer()}
			err := p.RunInContainer(context.Background(), testNamespace, tc.pod, tc.container, tc.cmd, tio)
			if code, err := exitCode(err); err == nil {
				t.Errorf("RunInContainer: want an error that is not an exit code, got exit code %d", code)
			}
		})
	}
}

func TestExecTTY(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("box", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "box")

	stdinR, stdinW := io.Pipe()
	tio := &testIO{stdin: stdinR, stdout: newSyncBuffer(), tty: true, resize: make(chan api.TermSize)}
	done := make(chan error, 1)
	go func() {
		done <- p.RunInContainer(context.Background(), testNamespace, "box", "main",
			[]string{"/bin/sh", "-c", "read x; tty; stty size; echo TERM=$TERM; exit 2"}, tio)
	}()
	// The second send returns only once the first size was applied.
	tio.resize <- api.TermSize{Width: 77, Height: 21}
	tio.resize <- api.TermSize{Width: 77, Height: 21}
	if _, err := io.WriteString(stdinW, "go\n"); err != nil {
		t.Fatal(err)
	}
	err := <-done
	stdinW.Close()
	code, err := exitCode(err)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.ReplaceAll(tio.stdout.String(), "\r\n", "\n")
	out = regexp.MustCompile(`/dev/pts/\d+`).ReplaceAllString(out, "/dev/pts/N")
	got := struct {
		Output string
		Code   int
	}{out, code}
	want := struct {
		Output string
		Code   int
	}{"go\n/dev/pts/N\n21 77\nTERM=xterm\n", 2}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tty exec (-want +got):\n%s", diff)
	}
}

func TestAttach(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	main := shContainer("main", `while read l; do echo "got $l"; echo "err $l" >&2; done; echo bye`)
	main.Stdin, main.StdinOnce = true, true
	createPod(t, p, testPod("talk", corev1.RestartPolicyNever, main))
	rec.waitRunning(t, "talk")

	stdinR, stdinW := io.Pipe()
	tio := &testIO{stdin: stdinR, stdout: newSyncBuffer(), stderr: newSyncBuffer()}
	done := make(chan error, 1)
	go func() { done <- p.AttachToContainer(context.Background(), testNamespace, "talk", "main", tio) }()
	if _, err := io.WriteString(stdinW, "one\n"); err != nil {
		t.Fatal(err)
	}
	if out, ok := tio.stdout.wait(func(s string) bool { return strings.Contains(s, "got one\n") }); !ok {
		t.Fatalf("attach stdout %q lacks the answer", out)
	}
	// With stdinOnce, the client's EOF closes the process's stdin: it says
	// bye and exits, which ends the attach.
	stdinW.Close()
	if err := <-done; err != nil {
		t.Fatalf("AttachToContainer: %v", err)
	}
	got := []string{tio.stdout.String(), tio.stderr.String()}
	want := []string{"got one\nbye\n", "err one\n"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("attached output, stdout and stderr (-want +got):\n%s", diff)
	}
}

func TestAttachEndsWhenClientLeaves(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	main := shContainer("main", "exec cat")
	main.Stdin = true
	createPod(t, p, testPod("cat", corev1.RestartPolicyAlways, main))
	rec.waitRunning(t, "cat")

	ctx, cancel := context.WithCancel(context.Background())
	stdinR, stdinW := io.Pipe()
	tio := &testIO{stdin: stdinR, stdout: newSyncBuffer()}
	done := make(chan error, 1)
	go func() { done <- p.AttachToContainer(ctx, testNamespace, "cat", "main", tio) }()
	io.WriteString(stdinW, "echo\n")
	if out, ok := tio.stdout.wait(func(s string) bool { return s == "echo\n" }); !ok {
		t.Fatalf("attach stdout = %q", out)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("AttachToContainer: %v", err)
	}
	stdinW.Close()
	if pod, _ := p.GetPod(context.Background(), testNamespace, "cat"); pod.Status.ContainerStatuses[0].State.Running == nil {
		t.Errorf("container stopped when the client left: %+v", pod.Status.ContainerStatuses[0].State)
	}
}

// pipeStream is the node's end of a port-forward stream with SPDY's
// semantics: Close ends only the node's writing direction.
type pipeStream struct {
	r *io.PipeReader // what the client sent
	w *io.PipeWriter // to the client
}

func (s pipeStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s pipeStream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s pipeStream) Close() error                { return s.w.Close() }

// echoServer echoes each connection until the client half-closes, then
// half-closes back. It stops when the test ends.
func echoServer(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				io.Copy(conn, conn)
				conn.(*net.TCPConn).CloseWrite()
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).Port
}

func TestPortForward(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("srv", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "srv")
	port := echoServer(t)

	tests := []struct {
		name string
		size int
	}{
		{name: "nothing", size: 0},
		{name: "one byte", size: 1},
		{name: "eight megabytes", size: 8 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := make([]byte, tc.size)
			rand.Read(payload)
			toNodeR, toNodeW := io.Pipe()
			toClientR, toClientW := io.Pipe()
			done := make(chan error, 1)
			go func() {
				done <- p.PortForward(context.Background(), testNamespace, "srv", int32(port), pipeStream{toNodeR, toClientW})
			}()
			sent := make(chan error, 1)
			go func() {
				_, err := toNodeW.Write(payload)
				toNodeW.Close() // half-close: the echo server sees EOF
				sent <- err
			}()
			got, err := io.ReadAll(toClientR)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("PortForward: %v", err)
			}
			if diff := cmp.Diff(sha(payload), sha(got)); diff != "" {
				t.Errorf("echoed %d bytes of %d; sha256 (-want +got):\n%s", len(got), len(payload), diff)
			}
		})
	}
}

func TestPortForwardClosedPort(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("srv", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "srv")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // now nothing listens there
	toNodeR, _ := io.Pipe()
	_, toClientW := io.Pipe()
	if err := p.PortForward(context.Background(), testNamespace, "srv", int32(port), pipeStream{toNodeR, toClientW}); err == nil {
		t.Error("PortForward to a closed port succeeded")
	}
}
