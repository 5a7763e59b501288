package issuer

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"tether.dev/tether/internal/audit"
)

// TestAuditSignIns: every token endpoint answer is one audit event naming
// the principal (or why it was refused), never the secret.
func TestAuditSignIns(t *testing.T) {
	var mu sync.Mutex
	var events []audit.Event
	e := newEnv(t, func(c *Config) {
		c.Audit = func(ev audit.Event) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
		}
	})
	form := func(secret string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {spClientID}, "client_secret": {secret}, "resource": {audience}}
	}
	if r := e.post(t, "/token", form(e.spSecret)); r.status != 200 {
		t.Fatalf("client credentials: %d %s", r.status, r.body)
	}
	if r := e.post(t, "/token", form("tcs_wrong")); r.status != 401 {
		t.Fatalf("wrong secret: %d %s", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 2 {
		t.Fatalf("%d events, want 2: %+v", len(events), events)
	}
	ok, refused := events[0], events[1]
	if ok.Type != audit.TypeSignIn || ok.Decision != audit.DecisionAllow || ok.PrincipalID != spID || ok.PrincipalName != "CI deployer" ||
		ok.Name != spClientID || ok.Verb != "client_credentials" || ok.Status != 200 || ok.SourceAddr == "" {
		t.Errorf("sign-in event: %+v", ok)
	}
	if refused.Decision != audit.DecisionDeny || refused.Status != 401 || !strings.Contains(refused.Reason, "invalid_client") || refused.PrincipalID != "" {
		t.Errorf("refused sign-in event: %+v", refused)
	}
	for _, ev := range events {
		if s := fmt.Sprintf("%+v", ev); strings.Contains(s, e.spSecret) || strings.Contains(s, "tcs_wrong") {
			t.Errorf("an event holds a secret: %s", s)
		}
	}
}
