package hub

import (
	"testing"
	"time"

	"tether.dev/tether/internal/store"
)

func TestRoutesLookup(t *testing.T) {
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	r := newRoutes("a")
	const wait = 5 * time.Second
	if rt := r.lookup("c1", now, wait); rt.peer != "" || !rt.wait {
		t.Errorf("before the first read: %+v, want no peer and a wait", rt)
	}
	r.setPeers([]store.Replica{{Name: "a", URL: "https://a"}, {Name: "b", URL: "https://b"}}, now)
	r.replaceHolders(map[string]string{"c1": "b", "c2": "a", "c3": "gone"}, now)

	tests := []struct {
		name, cluster string
		wantPeer      string
		wantWait      bool
	}{
		{"held by a live peer", "c1", "b", false},
		{"held here: the local table decides", "c2", "", false},
		{"held by a replica not among the live ones: its agent is moving", "c3", "", true},
		{"never held", "c4", "", false},
	}
	for _, tt := range tests {
		rt := r.lookup(tt.cluster, now, wait)
		if rt.peer != tt.wantPeer || rt.wait != tt.wantWait {
			t.Errorf("%s: peer %q wait %v, want %q %v", tt.name, rt.peer, rt.wait, tt.wantPeer, tt.wantWait)
		}
	}

	changed := r.lookup("c1", now, wait).changed
	r.markSuspect("b", now.Add(time.Second))
	select {
	case <-changed:
	default:
		t.Error("marking a replica suspect woke no waiter")
	}
	if rt := r.lookup("c1", now, wait); rt.peer != "" || !rt.wait {
		t.Errorf("held by a suspect replica: %+v, want no peer and a wait", rt)
	}
	if rt := r.lookup("c1", now.Add(time.Second), wait); rt.peer != "b" {
		t.Errorf("after the suspicion ran out: %+v, want b", rt)
	}

	// A route that goes away makes requests wait a while for the next.
	r.setHolder("c1", "", now)
	if rt := r.lookup("c1", now.Add(wait-time.Millisecond), wait); rt.peer != "" || !rt.wait {
		t.Errorf("just lost: %+v, want a wait", rt)
	}
	if rt := r.lookup("c1", now.Add(wait), wait); rt.wait {
		t.Errorf("lost %s ago: %+v, want no wait", wait, rt)
	}
	// The holder saying it no longer holds it drops the route; another
	// replica's word does not.
	later := now.Add(time.Second) // b is no longer suspect
	r.setHolder("c5", "b", later)
	r.forget("c5", "a", later)
	if rt := r.lookup("c5", later, wait); rt.peer != "b" {
		t.Errorf("forgotten by a non-holder: %+v, want b still", rt)
	}
	r.forget("c5", "b", later)
	if rt := r.lookup("c5", later, wait); rt.peer != "" || !rt.wait {
		t.Errorf("forgotten by its holder: %+v, want no peer and a wait", rt)
	}
}

func TestChangeQueue(t *testing.T) {
	q := newChangeQueue()
	q.add("c1")
	q.add("c2")
	q.add("c1") // folded
	ids, all, ok := q.next(t.Context())
	if !ok || all || len(ids) != 2 || ids[0] != "c1" || ids[1] != "c2" {
		t.Errorf("next = %v %v %v, want [c1 c2] false true", ids, all, ok)
	}
	q.add("c3")
	q.add("") // read everything: pending IDs are covered
	q.add("c4")
	ids, all, ok = q.next(t.Context())
	if !ok || !all || len(ids) != 0 {
		t.Errorf("next = %v %v %v, want [] true true", ids, all, ok)
	}
}
