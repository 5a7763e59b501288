package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/store"
	"tether.dev/tether/internal/store/sqlite"
	"tether.dev/tether/internal/store/storetest"
)

// observed records what an instrumented store reports.
type observed struct {
	mu  sync.Mutex
	ops []string
}

func (o *observed) observe(op string, _ time.Time, _ error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ops = append(o.ops, op)
}

func (o *observed) take() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := o.ops
	o.ops = nil
	return ops
}

func openSQLite(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestInstrumentedConformance runs the store conformance suite through the
// decorator: it changes nothing a caller sees.
func TestInstrumentedConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return store.Instrument(openSQLite(t), func(string, time.Time, error) {})
	})
}

// TestInstrumentedObservesEveryMethod calls every method of Store, by
// reflection (zero arguments: most are refused as invalid, which is still
// a call), and checks that each reached the backend and was reported under
// its own name, and that Operations lists exactly those names.
func TestInstrumentedObservesEveryMethod(t *testing.T) {
	var o observed
	st := store.Instrument(openSQLite(t), o.observe)
	if _, ok := st.(store.Watcher); !ok {
		t.Fatal("the instrumented SQLite store is not a store.Watcher: replicas would refuse it")
	}
	iface := reflect.TypeFor[store.Store]()
	v := reflect.ValueOf(st)
	ctxType := reflect.TypeFor[context.Context]()
	var called []string
	for i := range iface.NumMethod() {
		m := iface.Method(i)
		if m.Name == "Close" {
			continue // not observed; closing would end the test's store
		}
		args := make([]reflect.Value, m.Type.NumIn())
		for j := range args {
			if in := m.Type.In(j); in == ctxType {
				args[j] = reflect.ValueOf(t.Context())
			} else {
				args[j] = reflect.Zero(in)
			}
		}
		v.MethodByName(m.Name).Call(args)
		called = append(called, m.Name)
		if got := o.take(); !cmp.Equal([]string{m.Name}, got) {
			t.Errorf("%s reported %q; want exactly its own name", m.Name, got)
		}
	}
	slices.Sort(called)
	ops := store.Operations()
	slices.Sort(ops)
	if diff := cmp.Diff(called, ops); diff != "" {
		t.Errorf("Operations() against the methods of Store (-methods +Operations):\n%s", diff)
	}
}

// TestInstrumentedReportsErrors checks that the backend's error reaches
// both the caller and the observer.
func TestInstrumentedReportsErrors(t *testing.T) {
	var gotErr error
	st := store.Instrument(openSQLite(t), func(op string, start time.Time, err error) {
		if start.IsZero() {
			t.Errorf("%s: no start time", op)
		}
		gotErr = err
	})
	_, err := st.GetCluster(t.Context(), store.ClusterID("prod", "absent"))
	if !errors.Is(err, store.ErrNotFound) || !errors.Is(gotErr, store.ErrNotFound) {
		t.Errorf("GetCluster of an absent cluster: caller got %v, observer %v; want ErrNotFound for both", err, gotErr)
	}
}
