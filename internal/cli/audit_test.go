package cli

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

// TestAuditListPages lists more events than one page holds, and more bytes
// than the client reads of one answer: every one arrives, in order, and
// --limit stops where it says. (Pages of the hub's largest size once
// outgrew what the client reads of an answer.)
func TestAuditListPages(t *testing.T) {
	var st store.Store
	th := startHubConfig(t, func(c *hub.Config) { st = c.Store })
	const n = 2*auditPage + 500
	batch := make([]audit.Event, 0, n)
	for i := range n {
		batch = append(batch, audit.Event{
			Time: time.Now(), Type: "request", RequestID: fmt.Sprintf("req-%d", i), Replica: "test",
			PrincipalType: "kubernetesToken", PrincipalName: "system:serviceaccount:default:demo-user", SourceAddr: "127.0.0.1:40000",
			Cluster: "/groups/g/clusters/c", AuthMode: "token", Decision: "allow", Reason: strings.Repeat("r", store.MaxAuditFieldLen),
			Verb: "get", Resource: "configmaps", Namespace: "default", Name: "small", Path: "/api/v1/namespaces/default/configmaps/" + strings.Repeat("p", store.MaxAuditFieldLen-50),
			Status: 200,
		})
	}
	if _, err := st.AppendAudit(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	out, _ := th.admin(t, "", "audit", "list", "-o", "json")
	evs := decodeOut[[]audit.Event](t, out)
	if len(evs) != n {
		t.Fatalf("audit list: %d events, want %d", len(evs), n)
	}
	for i, e := range evs {
		if want := fmt.Sprintf("req-%d", i); e.RequestID != want {
			t.Fatalf("event %d is %s, want %s", i, e.RequestID, want)
		}
	}
	out, _ = th.admin(t, "", "audit", "list", "-o", "json", "--limit", fmt.Sprint(auditPage+1))
	if evs := decodeOut[[]audit.Event](t, out); len(evs) != auditPage+1 {
		t.Errorf("audit list --limit %d: %d events", auditPage+1, len(evs))
	}
}
