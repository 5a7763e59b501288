package bench

import (
	"math"
	"strings"
	"testing"
	"time"
)

// TestDataPathSections runs the data-path sections at small scale: each
// must measure every figure it promises, through a working tunnel, with
// sane values. The figures themselves are make bench's to judge.
func TestDataPathSections(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a hub and an agent per section")
	}
	ctx := t.Context()
	tether, err := BuildTether(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Tether: tether, Dir: t.TempDir(), Quick: true, Log: testLog{t}}
	want := map[string][]string{
		"requests": {"64 conns HTTP/1.1: rate", "hub+agent CPU per request", "HTTP/2 1 conn 64 streams: rate", "serial: p50"},
		"bulk":     {"one stream", "one stream: hub+agent CPU", "8 streams together", "agent private memory (RssAnon) after the data path's load"},
		"fairness": {"small-request p99"},
		"streams":  {"hub memory per idle stream", "agent memory per idle stream"},
		"restart":  {"one agent usable again after the hub is back: median", "one agent usable again after the hub is back: worst"},
	}
	for _, s := range []Section{Requests, Bulk, Fairness, Streams, Restart} {
		t.Run(s.Name, func(t *testing.T) {
			r := NewReport("test")
			if err := s.Run(ctx, o, r); err != nil {
				t.Fatal(err)
			}
			for _, name := range want[s.Name] {
				f, ok := find(r, name)
				if !ok {
					t.Errorf("no figure %q in %+v", name, r.Figures)
					continue
				}
				if math.IsNaN(f.Value) || math.IsInf(f.Value, 0) || (f.Value <= 0 && !strings.Contains(f.Name, "memory")) {
					t.Errorf("%s: value %v", f.Name, f.Value)
				}
				if f.Direct != nil && (f.Ratio == nil || *f.Ratio <= 0) {
					t.Errorf("%s: direct %v but ratio %v", f.Name, *f.Direct, f.Ratio)
				}
				if f.Target != "" && f.Met == nil {
					t.Errorf("%s: target %q not judged", f.Name, f.Target)
				}
			}
		})
	}
}

// find returns the first figure whose name starts with prefix.
func find(r *Report, prefix string) (Figure, bool) {
	for _, f := range r.Figures {
		if strings.HasPrefix(f.Name, prefix) {
			return f, true
		}
	}
	return Figure{}, false
}

// testLog sends progress lines to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestQuantile(t *testing.T) {
	var l Latencies
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i))
	}
	if got := l.Quantile(.5); got != 50 {
		t.Errorf("p50 of 1..100 = %d, want 50", got)
	}
	if got := l.Quantile(.99); got != 99 {
		t.Errorf("p99 of 1..100 = %d, want 99", got)
	}
	if got := (Latencies{}).Quantile(.5); got != 0 {
		t.Errorf("p50 of nothing = %d, want 0", got)
	}
}
