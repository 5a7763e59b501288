package procpods

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

func readAll(t *testing.T, r io.Reader) string {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

var timestampRE = regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z `)

func TestContainerLogs(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("printer", corev1.RestartPolicyNever,
		shContainer("main", `printf 'one\ntwo\nthree\n'; printf partial`)))
	if pod, ok := rec.wait("printer", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded }); !ok {
		t.Fatalf("pod did not succeed: %+v", statusOf(pod))
	}

	tests := []struct {
		name string
		opts api.ContainerLogOpts
		want string
	}{
		{name: "all", want: "one\ntwo\nthree\npartial"},
		{name: "follow ends at exit", opts: api.ContainerLogOpts{Follow: true}, want: "one\ntwo\nthree\npartial"},
		{name: "tail counts the unfinished line", opts: api.ContainerLogOpts{Tail: 2}, want: "three\npartial"},
		{name: "tail longer than the log", opts: api.ContainerLogOpts{Tail: 10}, want: "one\ntwo\nthree\npartial"},
		{name: "limit bytes", opts: api.ContainerLogOpts{LimitBytes: 6}, want: "one\ntw"},
		{name: "timestamps", opts: api.ContainerLogOpts{Timestamps: true, Tail: 1}, want: "TS partial"},
		{name: "since the future", opts: api.ContainerLogOpts{SinceTime: time.Now().Add(time.Hour)}, want: ""},
		{name: "since an hour", opts: api.ContainerLogOpts{SinceSeconds: 3600}, want: "one\ntwo\nthree\npartial"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := p.GetContainerLogs(context.Background(), testNamespace, "printer", "main", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got := timestampRE.ReplaceAllString(readAll(t, rc), "TS ")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestContainerLogsErrors(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("one", corev1.RestartPolicyAlways, shContainer("main", "exec sleep 100")))
	rec.waitRunning(t, "one")
	tests := []struct {
		name      string
		pod       string
		container string
		opts      api.ContainerLogOpts
	}{
		{name: "unknown pod", pod: "other", container: "main"},
		{name: "unknown container", pod: "one", container: "other"},
		{name: "no previous run", pod: "one", container: "main", opts: api.ContainerLogOpts{Previous: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := p.GetContainerLogs(context.Background(), testNamespace, tc.pod, tc.container, tc.opts)
			if err == nil {
				rc.Close()
				t.Fatal("GetContainerLogs succeeded")
			}
		})
	}
}

func TestPreviousLogs(t *testing.T) {
	p, rec := newTestProvider(t, func(cfg *Config) {
		cfg.RestartBackoff = time.Hour // the second run stays in back-off
		cfg.MaxRestartBackoff = time.Hour
	})
	createPod(t, p, testPod("crash", corev1.RestartPolicyAlways, shContainer("main", "echo run $(cat ../count 2>/dev/null || echo 0); echo 1 > ../count; exit 1")))
	pod, ok := rec.wait("crash", func(p *corev1.Pod) bool {
		cs := p.Status.ContainerStatuses[0]
		return cs.RestartCount == 1 && cs.State.Waiting != nil
	})
	if !ok {
		t.Fatalf("container not in back-off after one restart: %+v", statusOf(pod))
	}
	tests := []struct {
		name     string
		previous bool
		want     string
	}{
		{name: "current", want: "run 1\n"},
		{name: "previous", previous: true, want: "run 0\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rc, err := p.GetContainerLogs(context.Background(), testNamespace, "crash", "main", api.ContainerLogOpts{Previous: tc.previous})
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			if diff := cmp.Diff(tc.want, readAll(t, rc)); diff != "" {
				t.Errorf("logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFollowStreamsNewOutput(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("slow", corev1.RestartPolicyNever,
		shContainer("main", "echo first; while [ ! -e go ]; do sleep 0.02; done; echo second")))
	rec.waitRunning(t, "slow")

	rc, err := p.GetContainerLogs(context.Background(), testNamespace, "slow", "main", api.ContainerLogOpts{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	br := bufio.NewReader(rc)
	first, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	// Only now let the container write more: follow must deliver it.
	if err := os.WriteFile(filepath.Join(p.cfg.PodsDir, testNamespace, "slow", "main", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	rest := readAll(t, br) // ends when the container exits
	if diff := cmp.Diff("first\nsecond\n", first+rest); diff != "" {
		t.Errorf("followed logs (-want +got):\n%s", diff)
	}
}

func TestFollowStopsWhenClientCloses(t *testing.T) {
	p, rec := newTestProvider(t, nil)
	createPod(t, p, testPod("quiet", corev1.RestartPolicyAlways, shContainer("main", "echo hi; exec sleep 100")))
	rec.waitRunning(t, "quiet")
	rc, err := p.GetContainerLogs(context.Background(), testNamespace, "quiet", "main", api.ContainerLogOpts{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(rc).ReadString('\n')
	if diff := cmp.Diff("hi\n", line); diff != "" || err != nil {
		t.Errorf("first line (-want +got):\n%s (err %v)", diff, err)
	}
	// Closing stops the writer goroutine; goleak and Close's wait check it.
	rc.Close()
}

func TestLogFileRecords(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	lf, err := createLog(filepath.Join(t.TempDir(), "0.log"), clockAt(at))
	if err != nil {
		t.Fatal(err)
	}
	lf.write(streamStdout, []byte("a\nb"))
	lf.write(streamStderr, []byte("c\n"))
	lf.write(streamStdout, []byte("\n"))
	lf.close()
	b, err := os.ReadFile(lf.path)
	if err != nil {
		t.Fatal(err)
	}
	ts := "2026-01-02T03:04:05.000000006Z"
	want := strings.Join([]string{
		ts + " stdout F a",
		ts + " stdout P b",
		ts + " stderr F c",
		ts + " stdout F ",
	}, "\n") + "\n"
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("log file (-want +got):\n%s", diff)
	}
}

func clockAt(t time.Time) clock.PassiveClock { return fixedClock{t} }

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time                  { return c.t }
func (c fixedClock) Since(t time.Time) time.Duration { return c.t.Sub(t) }

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name string
		line string
		want logRecord
		ok   bool
	}{
		{name: "full", line: "2026-01-02T03:04:05.000000006Z stdout F hello world",
			want: logRecord{time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), stream: "stdout", text: []byte("hello world")}, ok: true},
		{name: "partial empty", line: "2026-01-02T03:04:05Z stderr P ",
			want: logRecord{time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), stream: "stderr", partial: true, text: []byte{}}, ok: true},
		{name: "torn", line: "2026-01-02T03:04", ok: false},
		{name: "bad time", line: "yesterday stdout F x", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parseRecord([]byte(tc.line))
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(logRecord{})); diff != "" || ok != tc.ok {
				t.Errorf("parseRecord ok=%v, want %v (-want +got):\n%s", ok, tc.ok, diff)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("2026-01-02T03:04:05.000000006Z stdout F hello"))
	f.Add([]byte("2026-01-02T03:04:05Z stderr P "))
	f.Add([]byte("x y z"))
	f.Fuzz(func(t *testing.T, line []byte) {
		rec, ok := parseRecord(line)
		if ok && len(rec.text) > len(line) {
			t.Errorf("text longer than the line")
		}
	})
}
