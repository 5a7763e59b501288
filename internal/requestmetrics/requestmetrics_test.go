package requestmetrics_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/requestmetrics"
)

// TestSeriesFromTheStart: every verb's histogram and every kind's gauge
// exist before the first request, under the component's names.
func TestSeriesFromTheStart(t *testing.T) {
	r := prometheus.NewRegistry()
	requestmetrics.New(promauto.With(r), "hub", "durations", "in flight")
	if got, want := testutil.CollectAndCount(r, "tether_hub_request_duration_seconds"), len(access.MetricVerbs()); got != want {
		t.Errorf("%d duration series, want one per verb (%d)", got, want)
	}
	if got, want := testutil.CollectAndCount(r, "tether_hub_long_running_requests"), len(access.LongRunningKinds()); got != want {
		t.Errorf("%d in-flight series, want one per kind (%d)", got, want)
	}
}

// TestObserve: only requests that are not long-running are timed.
func TestObserve(t *testing.T) {
	r := prometheus.NewRegistry()
	m := requestmetrics.New(promauto.With(r), "agent", "durations", "in flight")
	m.Observe("list", "", 30*time.Millisecond)
	m.Observe("list", "", 70*time.Millisecond)
	m.Observe("watch", access.KindWatch, time.Hour)
	tests := []struct {
		verb      string
		wantCount int // -1: no series at all
	}{
		{verb: "list", wantCount: 2},
		{verb: "watch", wantCount: -1},
		{verb: "get", wantCount: 0},
	}
	for _, tt := range tests {
		t.Run(tt.verb, func(t *testing.T) {
			if got := sampleCount(t, r, "tether_agent_request_duration_seconds", tt.verb); got != tt.wantCount {
				t.Errorf("%d observations, want %d", got, tt.wantCount)
			}
		})
	}
}

// TestInFlight: a long-running request is counted until it ends; one that
// is not is never counted.
func TestInFlight(t *testing.T) {
	r := prometheus.NewRegistry()
	m := requestmetrics.New(promauto.With(r), "hub", "durations", "in flight")
	watch := m.LongRunning.WithLabelValues(access.KindWatch)
	done1, done2 := m.InFlight(access.KindWatch), m.InFlight(access.KindWatch)
	short := m.InFlight("")
	if got := testutil.ToFloat64(watch); got != 2 {
		t.Errorf("%v watches in flight, want 2", got)
	}
	done1()
	short()
	if got := testutil.ToFloat64(watch); got != 1 {
		t.Errorf("%v watches in flight after one ended, want 1", got)
	}
	done2()
	for _, k := range access.LongRunningKinds() {
		if got := testutil.ToFloat64(m.LongRunning.WithLabelValues(k)); got != 0 {
			t.Errorf("%v %s in flight at the end, want 0", got, k)
		}
	}
}

// sampleCount is the number of observations of name{verb}; -1 if there is
// no such series.
func sampleCount(t *testing.T, g prometheus.Gatherer, name, verb string) int {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "verb" && l.GetValue() == verb {
					return int(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return -1
}
