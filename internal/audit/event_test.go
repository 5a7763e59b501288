package audit_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
)

// t0 has nanoseconds and is not in UTC: the hash covers the instant, to the
// nanosecond.
var t0 = time.Date(2025, time.March, 1, 12, 0, 0, 123456789, time.FixedZone("UTC+1", 60*60))

// sample is an event with every field set.
func sample() audit.Event {
	return audit.Event{
		Seq:           3,
		Time:          t0,
		Type:          audit.TypeSessionEnd,
		RequestID:     "req-1",
		Replica:       "hub-0",
		PrincipalID:   "3f2a0c4e-8b1d-4e5f-9a6b-7c8d9e0f1a2b",
		PrincipalType: "user",
		PrincipalName: "Alice",
		SourceAddr:    "192.0.2.1:54321",
		Cluster:       "/groups/prod/clusters/web",
		AuthMode:      "hub-rbac",
		Decision:      audit.DecisionAllow,
		Reason:        "role Cluster Admin",
		Verb:          "create",
		APIGroup:      "apps",
		Resource:      "pods",
		Subresource:   "exec",
		Namespace:     "default",
		Name:          "web-0",
		Path:          "/api/v1/namespaces/default/pods/web-0/exec",
		Status:        101,
		BytesIn:       12,
		BytesOut:      3456,
		Duration:      90 * time.Second,
		PrevHash:      bytes.Repeat([]byte{1}, audit.HashSize),
		Hash:          bytes.Repeat([]byte{2}, audit.HashSize),
	}
}

// change changes field i of *e to another value of its type: strings get
// a byte more, integers one more, times a nanosecond later, byte slices a
// flipped bit (or a byte, when empty). It reports false for a field of a
// type it does not know.
func change(e *audit.Event, i int) bool {
	f := reflect.ValueOf(e).Elem().Field(i)
	switch {
	case f.Type() == reflect.TypeFor[time.Time]():
		f.Set(reflect.ValueOf(f.Interface().(time.Time).Add(time.Nanosecond)))
	case f.Kind() == reflect.String:
		f.SetString(f.String() + "x")
	case f.Kind() == reflect.Int, f.Kind() == reflect.Int64:
		f.SetInt(f.Int() + 1)
	case f.Type() == reflect.TypeFor[[]byte]():
		b := bytes.Clone(f.Bytes())
		if len(b) == 0 {
			b = []byte{0}
		} else {
			b[0] ^= 1
		}
		f.SetBytes(b)
	default:
		return false
	}
	return true
}

// fields returns the names of Event's fields, by index.
func fields() []string {
	t := reflect.TypeFor[audit.Event]()
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Name
	}
	return names
}

// TestComputeHashCoversEveryField changes each field in turn, of the zero
// event and of one with every field set: the hash changes, but for the
// hashes themselves, which it does not cover (it chains to its argument).
// A field added to Event but left out of the hash fails here.
func TestComputeHashCoversEveryField(t *testing.T) {
	prev := bytes.Repeat([]byte{7}, audit.HashSize)
	bases := []struct {
		name string
		e    audit.Event
	}{
		{"zero event", audit.Event{}},
		{"every field set", sample()},
	}
	for _, base := range bases {
		for i, name := range fields() {
			t.Run(base.name+"/"+name, func(t *testing.T) {
				e := base.e
				if !change(&e, i) {
					t.Fatalf("the test cannot change field %s: teach change its type", name)
				}
				if reflect.DeepEqual(e, base.e) {
					t.Fatalf("changing %s left the event as it was", name)
				}
				changed := !bytes.Equal(base.e.ComputeHash(prev), e.ComputeHash(prev))
				if want := name != "PrevHash" && name != "Hash"; changed != want {
					t.Errorf("changing %s changed the hash: %v, want %v", name, changed, want)
				}
			})
		}
	}
}

func TestComputeHashDependsOnPrev(t *testing.T) {
	e := sample()
	zero := make([]byte, audit.HashSize)
	other := slices.Clone(zero)
	other[audit.HashSize-1] = 1
	tests := []struct {
		name string
		a, b []byte
		same bool
	}{
		{"same prev", zero, slices.Clone(zero), true},
		{"one bit of prev", zero, other, false},
		{"nil and all zero", nil, zero, false},
		{"prev a byte shorter", zero, zero[1:], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if same := bytes.Equal(e.ComputeHash(tt.a), e.ComputeHash(tt.b)); same != tt.same {
				t.Errorf("ComputeHash(%x) == ComputeHash(%x): %v, want %v", tt.a, tt.b, same, tt.same)
			}
		})
	}
}

// TestComputeHashUnambiguous moves bytes between neighbouring fields: each
// string carries its length, so the hash changes.
func TestComputeHashUnambiguous(t *testing.T) {
	tests := []struct {
		name string
		a, b audit.Event
	}{
		{"type and request ID", audit.Event{Type: "ab"}, audit.Event{Type: "a", RequestID: "b"}},
		{"path and nothing after", audit.Event{Name: "n", Path: ""}, audit.Event{Name: "", Path: "n"}},
		{"verb and API group", audit.Event{Verb: "get", APIGroup: "apps"}, audit.Event{Verb: "getapps"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(tt.a.ComputeHash(nil), tt.b.ComputeHash(nil)) {
				t.Errorf("%+v and %+v hash alike", tt.a, tt.b)
			}
		})
	}
}

// TestComputeHashEncoding pins the encoding, as its doc describes it (the
// value was checked against a separate implementation of that
// description): a chain stored before a change must verify after it.
// Changing it means a new version, in "tether-audit-v1" and here.
func TestComputeHashEncoding(t *testing.T) {
	const want = "0651f8352560fee76f370deef512faa623cf89f917f7a3329fe9a9581ff316e3"
	got := hex.EncodeToString(sample().ComputeHash(make([]byte, audit.HashSize)))
	if got != want {
		t.Errorf("ComputeHash of the sample = %s, want %s", got, want)
	}
}

func TestHashableTime(t *testing.T) {
	first, last := time.Unix(0, math.MinInt64), time.Unix(0, math.MaxInt64)
	tests := []struct {
		name string
		t    time.Time
		want bool
	}{
		{"now-ish, not in UTC", t0, true},
		{"the Unix epoch", time.Unix(0, 0), true},
		{"first", first, true},
		{"before the first", first.Add(-time.Nanosecond), false},
		{"last", last, true},
		{"after the last", last.Add(time.Nanosecond), false},
		{"year 2263", time.Date(2263, time.January, 1, 0, 0, 0, 0, time.UTC), false},
		{"zero", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := audit.HashableTime(tt.t); got != tt.want {
				t.Errorf("HashableTime(%v) = %v, want %v", tt.t, got, tt.want)
			}
		})
	}
}

// chain builds a chain of n events by hand, from event 1.
func chain(n int) []audit.Event {
	events := make([]audit.Event, n)
	prev := make([]byte, audit.HashSize)
	for i := range events {
		e := audit.Event{
			Seq:      int64(i + 1),
			Time:     t0.Add(time.Duration(i) * time.Second),
			Type:     audit.TypeRequest,
			Decision: audit.DecisionAllow,
			Verb:     "get",
			Status:   200,
			PrevHash: prev,
		}
		e.Hash = e.ComputeHash(prev)
		events[i] = e
		prev = e.Hash
	}
	return events
}

// shift returns t plus n times 2^64 ns: the same int64 Unix nanoseconds,
// wrapped around.
func shift(t time.Time, n int) time.Time {
	for range n {
		t = t.Add(math.MaxInt64).Add(math.MaxInt64).Add(2)
	}
	return t
}

func TestVerify(t *testing.T) {
	c := chain(5)
	// edit returns the chain with event i (from 0) changed by f.
	edit := func(i int, f func(e *audit.Event)) []audit.Event {
		events := slices.Clone(c)
		f(&events[i])
		return events
	}
	// renumbered returns events numbered from 1.
	renumbered := func(events []audit.Event) []audit.Event {
		events = slices.Clone(events)
		for i := range events {
			events[i].Seq = int64(i + 1)
		}
		return events
	}
	// relinked returns events renumbered, and from event i (from 0) on
	// linked to the hash of the one before, as a forger without the
	// hashing would.
	relinked := func(events []audit.Event, from int) []audit.Event {
		events = renumbered(events)
		for i := from; i < len(events); i++ {
			events[i].PrevHash = events[i-1].Hash
		}
		return events
	}
	forged := audit.Event{Seq: 3, Time: t0, Type: audit.TypeRequest, Decision: audit.DecisionAllow, Verb: "delete", PrevHash: c[1].Hash}
	forged.Hash = forged.ComputeHash(forged.PrevHash)

	tests := []struct {
		name   string
		events []audit.Event
		prev   []byte
		want   string // in the error; "" for none
	}{
		{"the whole chain", c, nil, ""},
		{"the whole chain, prev all zero", c, make([]byte, audit.HashSize), ""},
		{"no events", nil, nil, ""},
		{"a part, from the hash before it", c[2:], c[1].Hash, ""},
		{"one event, from the hash before it", c[4:], c[3].Hash, ""},
		{"a part without the hash before it", c[2:], nil, "at event 3: it does not follow"},
		{"wrong prev", c, c[0].Hash, "at event 1: it does not follow"},
		{"prev of the wrong length", c, make([]byte, audit.HashSize-1), "at event 1: it does not follow"},
		{"a field edited", edit(2, func(e *audit.Event) { e.Verb = "delete" }), nil, "at event 3: its content does not match its hash (edited)"},
		{"the time edited by a nanosecond", edit(2, func(e *audit.Event) { e.Time = e.Time.Add(time.Nanosecond) }), nil, "at event 3: its content does not match its hash (edited)"},
		{"the time moved by 2^64 ns", edit(2, func(e *audit.Event) { e.Time = shift(e.Time, 1) }), nil, "at event 3: its content does not match its hash (edited)"},
		{"the time moved by 125 × 2^64 ns, whole microseconds", edit(2, func(e *audit.Event) { e.Time = shift(e.Time, 125) }), nil, "at event 3: its content does not match its hash (edited)"},
		{"the last event's hash edited", edit(4, func(e *audit.Event) { e.Hash = c[3].Hash }), nil, "at event 5: its content does not match its hash (edited)"},
		{"a sequence number edited", edit(2, func(e *audit.Event) { e.Seq = 4 }), nil, "event 4 follows event 2: 1 event(s) missing"},
		{"the first sequence number edited", edit(0, func(e *audit.Event) { e.Seq = 0 }), nil, "at event 0: its content does not match its hash (edited)"},
		{"an event deleted", slices.Delete(slices.Clone(c), 2, 3), nil, "event 4 follows event 2: 1 event(s) missing"},
		{"two events deleted", slices.Delete(slices.Clone(c), 1, 3), nil, "event 4 follows event 1: 2 event(s) missing"},
		{"the first event deleted", c[1:], nil, "at event 2: it does not follow"},
		{"an event deleted, the later ones renumbered", renumbered(slices.Delete(slices.Clone(c), 2, 3)), nil, "at event 3: it does not follow"},
		{"an event deleted, the later ones renumbered and relinked", relinked(slices.Delete(slices.Clone(c), 2, 3), 2), nil, "at event 3: its content does not match its hash (edited)"},
		{"an event inserted", slices.Insert(slices.Clone(c), 2, forged), nil, "event 3 follows event 3: out of order or repeated"},
		{"an event inserted, the later ones renumbered", renumbered(slices.Insert(slices.Clone(c), 2, forged)), nil, "at event 4: it does not follow"},
		{"an event inserted, the later ones renumbered and relinked", relinked(slices.Insert(slices.Clone(c), 2, forged), 3), nil, "at event 4: its content does not match its hash (edited)"},
		{"an event repeated", slices.Insert(slices.Clone(c), 2, c[1]), nil, "event 2 follows event 2: out of order or repeated"},
		{"two events swapped", []audit.Event{c[0], c[2], c[1], c[3], c[4]}, nil, "event 3 follows event 1: 1 event(s) missing"},
		{"two events swapped, renumbered", renumbered([]audit.Event{c[0], c[2], c[1], c[3], c[4]}), nil, "at event 2: it does not follow"},
		{"in reverse order", []audit.Event{c[4], c[3], c[2], c[1], c[0]}, nil, "at event 5: it does not follow"},
		// What Verify cannot see: it checks the events it is given.
		{"the last events deleted", c[:3], nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := audit.Verify(tt.events, tt.prev)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Verify = %v, want nil", err)
			case tt.want != "" && (!errors.Is(err, audit.ErrBroken) || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Verify = %v, want an error matching %v that says %q", err, audit.ErrBroken, tt.want)
			}
		})
	}
}

// FuzzVerify builds a chain of three events from the input, which must
// verify, then changes one field of one event: Verify must report it.
func FuzzVerify(f *testing.F) {
	f.Add(audit.TypeRequest, "role Cluster Reader", 200, int64(512), t0.UnixNano(), uint8(13), uint8(1))
	f.Fuzz(func(t *testing.T, typ, reason string, status int, bytesIn, nanos int64, field, event uint8) {
		events := make([]audit.Event, 3)
		prev := make([]byte, audit.HashSize)
		for i := range events {
			e := audit.Event{
				Seq:      int64(i + 1),
				Time:     time.Unix(0, nanos),
				Type:     typ,
				Decision: audit.DecisionAllow,
				Reason:   reason,
				Status:   status,
				BytesIn:  bytesIn,
				PrevHash: prev,
			}
			e.Hash = e.ComputeHash(prev)
			events[i] = e
			prev = e.Hash
		}
		if err := audit.Verify(events, nil); err != nil {
			t.Fatalf("Verify of the chain as built: %v", err)
		}
		i, fi := int(event)%len(events), int(field)%len(fields())
		if !change(&events[i], fi) {
			t.Fatalf("the test cannot change field %s: teach change its type", fields()[fi])
		}
		if err := audit.Verify(events, nil); !errors.Is(err, audit.ErrBroken) {
			t.Fatalf("Verify after changing %s of event %d = %v, want %v", fields()[fi], i+1, err, audit.ErrBroken)
		}
	})
}

// FuzzComputeHash splits the same bytes differently between two string
// fields: the hashes are equal only if the fields are.
func FuzzComputeHash(f *testing.F) {
	f.Add("get", "apps", uint8(11), uint(2))
	var strs []int // the indexes of Event's string fields
	for i, name := range fields() {
		if sf, _ := reflect.TypeFor[audit.Event]().FieldByName(name); sf.Type.Kind() == reflect.String {
			strs = append(strs, i)
		}
	}
	f.Fuzz(func(t *testing.T, a, b string, field uint8, cut uint) {
		k := int(field) % (len(strs) - 1)
		joined := a + b
		c := int(cut % uint(len(joined)+1))
		var e1, e2 audit.Event
		v1, v2 := reflect.ValueOf(&e1).Elem(), reflect.ValueOf(&e2).Elem()
		v1.Field(strs[k]).SetString(a)
		v1.Field(strs[k+1]).SetString(b)
		v2.Field(strs[k]).SetString(joined[:c])
		v2.Field(strs[k+1]).SetString(joined[c:])
		same := joined[:c] == a
		if got := bytes.Equal(e1.ComputeHash(nil), e2.ComputeHash(nil)); got != same {
			t.Fatalf("%s, %s = %q, %q and %q, %q: hashes equal %v, want %v",
				fields()[strs[k]], fields()[strs[k+1]], a, b, joined[:c], joined[c:], got, same)
		}
	})
}
