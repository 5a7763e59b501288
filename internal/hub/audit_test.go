package hub

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// syncBuffer is a bytes.Buffer safe for the auditor's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuditTrail(t *testing.T) {
	sink := &syncBuffer{}
	rs := newReplicaSetWith(t, func(c *Config) { c.AuditLog = sink }, "a", "b")
	api := newAPIServer(t)
	created := rs.createCluster(t, "a", "g1", "c1")
	rs.runAgent(t, "a", created.Join.JoinToken, api.restConfig())
	poll(t, "replica b learns that a holds the tunnel", func() bool {
		return rs.hubs["b"].hub.rt.lookup(created.Cluster.ID, time.Now(), time.Second).peer == "a"
	})
	// A service-account-shaped token: the hub records its subject as the
	// principal's name, unverified (the API server judges it).
	sa := "eyJhbGciOiJSUzI1NiJ9." + b64url(`{"sub":"system:serviceaccount:default:robot"}`) + ".c2ln"
	get := func(replica, path, token string, extra http.Header) (int, string) {
		h := http.Header{}
		if token != "" {
			h.Set("Authorization", "Bearer "+token)
		}
		for k, v := range extra {
			h[k] = v
		}
		req, _ := http.NewRequest("GET", rs.hubs[replica].url+path, nil)
		req.Header = h
		resp, err := rs.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("X-Request-Id")
	}
	_, direct := get("a", "/k8s/g1/c1/api/v1/namespaces/web/pods?watch=0", sa, nil)
	_, forwarded := get("b", "/k8s/g1/c1/apis/apps/v1/namespaces/web/deployments/d1", sa, nil)
	if code, _ := get("b", "/k8s/g1/c1/api/v1/pods", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := get("a", "/k8s/g1/c1/api/v1/pods", sa, http.Header{headerPeer: {"a;1;AAAA"}}); code != http.StatusUnauthorized {
		t.Fatalf("forged replica proof: %d", code)
	}

	var events []audit.Event
	poll(t, "the events are written", func() bool {
		var err error
		events, err = rs.store.ListAudit(context.Background(), store.AuditFilter{})
		return err == nil && len(events) >= 6
	})
	if err := audit.Verify(events, nil); err != nil {
		t.Fatalf("the chain is broken: %v", err)
	}
	find := func(requestID string) audit.Event {
		t.Helper()
		var found []audit.Event
		for _, e := range events {
			if e.RequestID == requestID {
				found = append(found, e)
			}
		}
		if len(found) != 1 {
			t.Fatalf("%d events with request ID %s, want exactly 1 (the replica that served it records it): %+v", len(found), requestID, found)
		}
		return found[0]
	}
	type summary struct {
		Type, Replica, Cluster, Principal, PrincipalType, AuthMode, Decision string
		Verb, APIGroup, Resource, Namespace, Name                            string
		Status                                                               int
	}
	sum := func(e audit.Event) summary {
		return summary{e.Type, e.Replica, e.Cluster, e.PrincipalName, e.PrincipalType, e.AuthMode, e.Decision,
			e.Verb, e.APIGroup, e.Resource, e.Namespace, e.Name, e.Status}
	}
	if got, want := sum(find(direct)), (summary{"request", "a", created.Cluster.ID, "system:serviceaccount:default:robot", "kubernetesToken", "token", "allow",
		"list", "", "pods", "web", "", 200}); got != want {
		t.Errorf("request to the holder:\n got %+v\nwant %+v", got, want)
	}
	if got, want := sum(find(forwarded)), (summary{"request", "a", created.Cluster.ID, "system:serviceaccount:default:robot", "kubernetesToken", "token", "allow",
		"get", "apps", "deployments", "web", "d1", 200}); got != want {
		t.Errorf("request forwarded by b, recorded by the holder a under b's request ID:\n got %+v\nwant %+v", got, want)
	}
	var denied, forgedProof, enrolled, createdEv bool
	for _, e := range events {
		switch {
		case e.Type == audit.TypeRequest && e.Decision == audit.DecisionDeny && e.Status == 401 && strings.Contains(e.Reason, "no credentials"):
			denied = true
		case e.Type == audit.TypeRequest && e.Decision == audit.DecisionDeny && strings.Contains(e.Reason, headerPeer):
			forgedProof = true
		case e.Type == audit.TypeEnroll && e.Decision == audit.DecisionAllow && e.Cluster == created.Cluster.ID:
			enrolled = true
		case e.Type == audit.TypeChange && e.Verb == "create" && e.Path == "/api/v1/clusters" && e.PrincipalType == "admin" && e.Status == 201:
			createdEv = true
		}
		if strings.Contains(e.Reason+e.PrincipalName+e.Path, "c2ln") {
			t.Errorf("event %d holds part of the token: %+v", e.Seq, e)
		}
	}
	if !denied || !forgedProof || !enrolled || !createdEv {
		t.Errorf("events: refused request %v, forged replica proof %v, enrollment %v, cluster creation %v; want all\n%+v", denied, forgedProof, enrolled, createdEv, events)
	}
	// The JSON lines carry the same chained events.
	lines := 0
	sc := bufio.NewScanner(strings.NewReader(sink.String()))
	for sc.Scan() {
		var e audit.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Seq == 0 || len(e.Hash) != audit.HashSize {
			t.Errorf("audit log line %q: %v", sc.Text(), err)
		}
		lines++
	}
	if lines < len(events) {
		t.Errorf("the audit log has %d lines for %d events", lines, len(events))
	}
}

func b64url(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestAuditorLeavesOutOnlyTheBadEvent: an event the store refuses does not
// take the rest of its batch with it.
func TestAuditorLeavesOutOnlyTheBadEvent(t *testing.T) {
	rs := newReplicaSet(t, "a")
	a := newAuditor(rs.store, nil, slogDiscard{})
	now := time.Now()
	good := func(reason string) audit.Event {
		return audit.Event{Time: now, Type: audit.TypeChange, Decision: audit.DecisionAllow, Reason: reason}
	}
	bad := good("bad")
	bad.Decision = "" // refused: a decision is required
	if !a.write(context.Background(), []audit.Event{good("one"), bad, good("two")}) {
		t.Fatal("write reported the store unavailable")
	}
	evs, err := rs.store.ListAudit(context.Background(), store.AuditFilter{Type: audit.TypeChange})
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for _, e := range evs {
		if e.Reason == "one" || e.Reason == "two" || e.Reason == "bad" {
			reasons = append(reasons, e.Reason)
		}
	}
	if strings.Join(reasons, ",") != "one,two" {
		t.Errorf("stored %v, want the two good events", reasons)
	}
}

type slogDiscard struct{}

func (slogDiscard) Warn(string, ...any) {}
