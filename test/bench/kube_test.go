package bench

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestKubernetesQuick runs the kubernetes section at its quick scale against
// the real rig cluster and checks that every path served requests and that
// every figure is there and computed. It asserts no speed: the figures
// themselves are make bench's.
func TestKubernetesQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Kubernetes control plane")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tether, err := BuildTether(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := NewReport("")
	o := Options{Tether: tether, Dir: t.TempDir(), Quick: true, Log: kubeTestLog{t}}
	if err := Kubernetes.Run(ctx, o, r); err != nil {
		t.Fatalf("kubernetes section: %v", err)
	}

	byName := map[string]Figure{}
	for _, f := range r.Figures {
		if f.Section != "kubernetes" {
			t.Errorf("figure %q is in section %q, want kubernetes", f.Name, f.Section)
		}
		byName[f.Name] = f
	}
	get := func(t *testing.T, name string) Figure {
		t.Helper()
		f, ok := byName[name]
		if !ok {
			var names []string
			for n := range byName {
				names = append(names, n)
			}
			t.Fatalf("no figure %q; have:\n%s", name, strings.Join(names, "\n"))
		}
		return f
	}
	for _, path := range []string{"via tether proxy", "via gateway"} {
		t.Run(path, func(t *testing.T) {
			compared := []string{
				"client-go, 16 workers: requests/s " + path,
				"client-go, 16 workers: p50 " + path,
				"client-go, 16 workers: p99 " + path,
				"client-go " + path + ": machine CPU per request",
				"kubectl get pods -A: median wall time " + path,
			}
			for _, name := range compared {
				f := get(t, name)
				if f.Direct == nil || *f.Direct <= 0 || f.Value <= 0 {
					t.Errorf("%s: direct %v, value %v; want both positive", name, f.Direct, f.Value)
				}
				if f.Ratio == nil || *f.Ratio <= 0 {
					t.Errorf("%s: ratio %v, want one computed", name, f.Ratio)
				}
			}
			for _, name := range []string{compared[0], compared[4]} {
				if f := get(t, name); f.Met == nil || f.Target == "" {
					t.Errorf("%s: no target (target %q, met %v)", name, f.Target, f.Met)
				}
			}
			// The section fails when the hub audited a request while the
			// loop ran direct, or none while it ran this path; here the
			// hub must have seen most of this path's requests.
			f := get(t, "client-go "+path+": requests in the hub's audit")
			if f.Direct == nil || f.Value < 0.5**f.Direct {
				t.Errorf("the hub audited %v of %v requests made %s; want most of them", f.Value, f.Direct, path)
			}
			if f := get(t, "client-go "+path+": "+map[string]string{
				"via tether proxy": "hub + agent + tether proxy",
				"via gateway":      "hub + agent",
			}[path]+" CPU per request"); f.Value <= 0 {
				t.Errorf("%s: %v µs; want the path's processes to have used CPU", f.Name, f.Value)
			}
		})
	}
	var table strings.Builder
	r.WriteTable(&table)
	t.Logf("\n%s", table.String())
}

// kubeTestLog sends progress lines to the test's log.
type kubeTestLog struct{ t *testing.T }

func (w kubeTestLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
