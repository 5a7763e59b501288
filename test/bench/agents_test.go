package bench

import (
	"context"
	"flag"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

var agentsFull = flag.String("agents.full", "", "TestAgentsFull: run these sections (agents, reconnect, or both, comma-separated) at full scale (minutes; 10,000 agents) and print their table")

// TestAgentSections runs the agents and reconnect sections at their quick
// scale against the real hub and checks that every agent connected and
// reconnected and that every figure was computed. It asserts no speed.
func TestAgentSections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds tether and runs hubs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tether, err := BuildTether(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Tether: tether, Dir: t.TempDir(), Quick: true}

	t.Run("agents", func(t *testing.T) {
		o.Log = agentsTestLog{t, time.Now()}
		steps, err := MeasureAgents(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if len(steps) != len(agentsScaleFor(true).counts) {
			t.Fatalf("%d steps measured, want %d", len(steps), len(agentsScaleFor(true).counts))
		}
		for _, s := range steps {
			if s.HubConnected != s.N {
				t.Errorf("%d agents: the hub shows %d connected", s.N, s.HubConnected)
			}
			if s.Redials != 0 {
				t.Errorf("%d agents: %d tunnels were dialled again while idle", s.N, s.Redials)
			}
			if s.RSSBefore <= 0 || s.RSS <= 0 || s.Enroll <= 0 || s.Connect <= 0 || s.Window <= 0 || s.CPU < 0 {
				t.Errorf("%d agents: implausible measurement %+v", s.N, s)
			}
		}
		checkFigures(t, "agents", agentsFigures(steps), 5*len(steps))
	})

	t.Run("reconnect", func(t *testing.T) {
		o.Log = agentsTestLog{t, time.Now()}
		s, err := MeasureStorm(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		if s.OldPID == s.NewPID || s.OldPID == 0 || s.NewPID == 0 {
			t.Errorf("hub PID %d before the restart, %d after: not restarted", s.OldPID, s.NewPID)
		}
		if n := s.Reconnected(); n != s.N || len(s.Back) != s.N {
			t.Errorf("%d of %d agents reconnected (%d measured)", n, s.N, len(s.Back))
		}
		if s.Dials < s.N {
			t.Errorf("%d dials after the restart, want at least one per agent (%d)", s.Dials, s.N)
		}
		if s.Down <= 0 || s.All <= 0 || s.PeakRSS <= 0 || s.PeakCPU < 0 {
			t.Errorf("implausible measurement: down %s, all %s, peak RSS %d, peak CPU %.1f", s.Down, s.All, s.PeakRSS, s.PeakCPU)
		}
		checkFigures(t, "reconnect", stormFigures(s), 6)
	})
}

// checkFigures checks that there are n figures in section, each a finite
// number, not negative.
func checkFigures(t *testing.T, section string, fs []Figure, n int) {
	t.Helper()
	if len(fs) != n {
		t.Errorf("%d figures, want %d", len(fs), n)
	}
	for _, f := range fs {
		if f.Section != section {
			t.Errorf("figure %q is in section %q, want %q", f.Name, f.Section, section)
		}
		if math.IsNaN(f.Value) || math.IsInf(f.Value, 0) || f.Value < 0 {
			t.Errorf("figure %q is %v", f.Name, f.Value)
		}
	}
}

// TestAgentsFull runs the sections -agents.full names at full scale (go
// test ./test/bench -run TestAgentsFull -agents.full agents,reconnect -v
// -timeout 10m) and prints their table and how long each took.
func TestAgentsFull(t *testing.T) {
	if *agentsFull == "" {
		t.Skip("full scale only with -agents.full SECTIONS")
	}
	ctx := context.Background()
	tether, err := BuildTether(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Tether: tether, Dir: t.TempDir(), Log: agentsTestLog{t, time.Now()}}
	r := NewReport("")
	for _, s := range []Section{Agents, Reconnect} {
		if !slices.Contains(strings.Split(*agentsFull, ","), s.Name) {
			continue
		}
		start := time.Now()
		if err := s.Run(ctx, o, r); err != nil {
			r.Fail(s.Name, err)
		}
		t.Logf("section %s took %s", s.Name, time.Since(start).Round(time.Second))
	}
	r.Duration = time.Since(r.Started)
	var b strings.Builder
	r.WriteTable(&b)
	t.Log("\n" + b.String())
	if len(r.Errors) > 0 {
		t.Fail()
	}
}

// agentsTestLog passes progress lines to the test log, with the time since
// start.
type agentsTestLog struct {
	t     *testing.T
	start time.Time
}

func (l agentsTestLog) Write(p []byte) (int, error) {
	l.t.Logf("%6.1fs %s", time.Since(l.start).Seconds(), strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
