package procpods

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestMain(m *testing.M) {
	// IgnoreCurrent: dependencies start goroutines in init (opencensus).
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// waitTimeout bounds every wait of these tests; they normally take
// milliseconds.
const waitTimeout = 15 * time.Second

// recorder keeps the latest status notified for each pod.
type recorder struct {
	mu      sync.Mutex
	latest  map[string]*corev1.Pod
	changed chan struct{} // closed and replaced on each notification
}

func newRecorder() *recorder {
	return &recorder{latest: make(map[string]*corev1.Pod), changed: make(chan struct{})}
}

func (r *recorder) notify(pod *corev1.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latest[podKey(pod.Namespace, pod.Name)] = pod
	close(r.changed)
	r.changed = make(chan struct{})
}

// wait returns the first notified status of the pod that satisfies ok, or
// the last one seen (and false) after waitTimeout.
func (r *recorder) wait(name string, ok func(*corev1.Pod) bool) (*corev1.Pod, bool) {
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		pod, changed := r.latest[podKey(testNamespace, name)], r.changed
		r.mu.Unlock()
		if pod != nil && ok(pod) {
			return pod, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return pod, false
		}
	}
}

// waitRunning waits until every container of the pod runs.
func (r *recorder) waitRunning(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	pod, ok := r.wait(name, func(p *corev1.Pod) bool {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				return false
			}
		}
		return p.Status.Phase == corev1.PodRunning
	})
	if !ok {
		t.Fatalf("pod %s not running; last status: %+v", name, statusOf(pod))
	}
	return pod
}

func statusOf(pod *corev1.Pod) any {
	if pod == nil {
		return nil
	}
	return pod.Status
}

const testNamespace = "ns"

// newTestProvider returns a running provider with fast restarts, closed at
// the end of the test.
func newTestProvider(t *testing.T, mod func(*Config)) (*Provider, *recorder) {
	t.Helper()
	cfg := Config{
		NodeName:            "test-node",
		NodeIP:              netip.MustParseAddr("127.0.0.1"),
		PodsDir:             t.TempDir(),
		RestartBackoff:      20 * time.Millisecond,
		MaxRestartBackoff:   40 * time.Millisecond,
		MaxGracePeriod:      5 * time.Second,
		ShutdownGracePeriod: time.Second,
		DrainTimeout:        time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	p.NotifyPods(ctx, rec.notify)
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p, rec
}

func testPod(name string, policy corev1.RestartPolicy, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace, UID: types.UID(name + "-uid")},
		Spec: corev1.PodSpec{
			NodeName:      "test-node",
			RestartPolicy: policy,
			Containers:    containers,
		},
	}
}

func shContainer(name, script string) corev1.Container {
	return corev1.Container{Name: name, Image: "none", Command: []string{"/bin/sh", "-c", script}}
}

func createPod(t *testing.T, p *Provider, pod *corev1.Pod) {
	t.Helper()
	if err := p.CreatePod(context.Background(), pod); err != nil {
		t.Fatalf("CreatePod: %v", err)
	}
}

// waitFile waits for a non-empty file and returns its content.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(path)
		if err == nil && len(b) > 0 && bytes.HasSuffix(b, []byte("\n")) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("file %s not written (err %v)", path, err)
		}
		<-tick.C
	}
}

// processGone reports whether pid no longer runs (gone or a zombie).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the command name in parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || strings.HasPrefix(string(b[i+1:]), " Z") || strings.HasPrefix(string(b[i+1:]), " X")
}

// pollUntil polls ok every 10ms until it is true or waitTimeout passes.
func pollUntil(ok func() bool) bool {
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !ok() {
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
	return true
}

// syncBuffer is a buffer safe for a writer and a reader at once; wait
// blocks until its content satisfies a predicate.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	close(b.changed)
	b.changed = make(chan struct{})
	return b.buf.Write(p)
}

func (b *syncBuffer) Close() error { return nil }

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) wait(ok func(string) bool) (string, bool) {
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		s, changed := b.buf.String(), b.changed
		b.mu.Unlock()
		if ok(s) {
			return s, true
		}
		select {
		case <-changed:
		case <-deadline.C:
			return s, false
		}
	}
}
