package console_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/net/html"

	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func TestSignInRoundTrip(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)

	signedOut := b.get(t, "/console/clusters")
	if signedOut.status != http.StatusOK || byID(signedOut.doc, "sign-in") == nil || byID(signedOut.doc, "clusters") != nil {
		t.Fatalf("signed out, /console/clusters: %d, want the sign-in page:\n%s", signedOut.status, signedOut.body)
	}
	if root := b.get(t, "/"); root.status != http.StatusFound || root.header.Get("Location") != "/console/" {
		t.Errorf("GET / answered %d to %q, want a redirect to /console/", root.status, root.header.Get("Location"))
	}

	// The link starts the authorization code flow with PKCE, state and
	// nonce, toward the embedded issuer's console client.
	start := b.get(t, attr(byID(b.get(t, "/console/").doc, "sign-in"), "href"))
	loc, err := url.Parse(start.header.Get("Location"))
	if start.status != http.StatusSeeOther || err != nil {
		t.Fatalf("sign-in link answered %d %q", start.status, start.header.Get("Location"))
	}
	q := loc.Query()
	got := map[string]string{"path": loc.Path, "client_id": q.Get("client_id"), "redirect_uri": q.Get("redirect_uri"), "method": q.Get("code_challenge_method"),
		"has state": yes(q.Get("state") != ""), "has nonce": yes(q.Get("nonce") != ""), "has challenge": yes(len(q.Get("code_challenge")) == 43)}
	want := map[string]string{"path": "/oidc/authorize", "client_id": consoleID, "redirect_uri": f.url + "/console/auth/callback", "method": "S256",
		"has state": "yes", "has nonce": "yes", "has challenge": "yes"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("authorization request (-want +got):\n%s", diff)
	}

	callback, landed := b.signIn(t, "alice@example.com", alicePW)
	if callback.status != http.StatusSeeOther || callback.header.Get("Location") != "/console/clusters" {
		t.Errorf("callback answered %d to %q, want /console/clusters", callback.status, callback.header.Get("Location"))
	}
	// The session cookie: __Host-, HttpOnly, Secure, SameSite=Lax, Path=/.
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: callback.header}).Cookies() {
		if c.Name == "__Host-tether-console" {
			cookie = c
		}
	}
	if cookie == nil {
		t.Fatalf("no session cookie set by the callback: %q", callback.header.Values("Set-Cookie"))
	}
	gotCookie := map[string]any{"HttpOnly": cookie.HttpOnly, "Secure": cookie.Secure, "SameSite": cookie.SameSite, "Path": cookie.Path, "Domain": cookie.Domain, "value length": len(cookie.Value)}
	wantCookie := map[string]any{"HttpOnly": true, "Secure": true, "SameSite": http.SameSiteLaxMode, "Path": "/", "Domain": "", "value length": 43}
	if diff := cmp.Diff(wantCookie, gotCookie); diff != "" {
		t.Errorf("session cookie (-want +got):\n%s", diff)
	}
	// The store keys the session by the ID's hash and holds neither the
	// ID nor a token in clear (JWTs start with "eyJ").
	sum := sha256.Sum256([]byte(cookie.Value))
	rec, err := f.store.GetEphemeral(t.Context(), "console-session", base64.RawURLEncoding.EncodeToString(sum[:]), f.clock.Now())
	if err != nil {
		t.Fatalf("the session record: %v", err)
	}
	if bytes.Contains(rec.Value, []byte(cookie.Value)) || bytes.Contains(rec.Value, []byte("eyJ")) || bytes.Contains(rec.Value, []byte("Alice")) {
		t.Error("the session record holds the session ID, a token or the name in clear")
	}

	if got := text(byID(landed.doc, "whoami")); got != "Alice Liddell" {
		t.Errorf("#whoami = %q, want Alice Liddell", got)
	}
	for id, href := range map[string]string{"nav-clusters": "/console/clusters", "nav-assignments": "/console/assignments", "nav-audit": "/console/audit", "nav-connect": "/console/connect"} {
		if n := byID(landed.doc, id); n == nil || n.Data != "a" || attr(n, "href") != href {
			t.Errorf("nav link #%s: %v, want an a to %s", id, n, href)
		}
	}
	if byID(landed.doc, "sign-out") == nil || byID(landed.doc, "clusters") == nil {
		t.Fatalf("signed-in clusters page lacks #sign-out or #clusters:\n%s", landed.body)
	}

	// A sign-in replayed (the same callback URL again) is refused.
	again := b.get(t, callback.url.String())
	if again.status != http.StatusBadRequest || byID(again.doc, "error") == nil {
		t.Errorf("replayed callback answered %d:\n%s", again.status, again.body)
	}

	// Sign-out ends the session everywhere: the old cookie no longer
	// opens it.
	out := b.post(t, "/console/auth/signout", url.Values{"csrf": {csrf(t, landed)}}, nil)
	if out.status != http.StatusSeeOther {
		t.Fatalf("sign-out answered %d:\n%s", out.status, out.body)
	}
	stale := f.browser(t)
	u, _ := url.Parse(f.url)
	stale.client.Jar.SetCookies(u, []*http.Cookie{{Name: cookie.Name, Value: cookie.Value, Path: "/", Secure: true}})
	if p := stale.get(t, "/console/clusters"); byID(p.doc, "sign-in") == nil {
		t.Errorf("the signed-out session's cookie still opens a page:\n%s", p.body)
	}
	if p := b.get(t, "/console/clusters"); byID(p.doc, "sign-in") == nil {
		t.Errorf("signed out, the browser still sees:\n%s", p.body)
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func TestSignInReturnsToPage(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	p := b.get(t, "/console/audit?decision=deny")
	link := byID(p.doc, "sign-in")
	p = b.follow(t, b.get(t, attr(link, "href")))
	form := find(p.doc, func(n *html.Node) bool { return n.Data == "form" })
	v := formValues(form)
	v.Set("login", "alice@example.com")
	v.Set("password", alicePW)
	v.Set("action", "approve")
	action, _ := p.url.Parse(attr(form, "action"))
	p = b.post(t, action.String(), v, nil)
	loc, _ := p.url.Parse(p.header.Get("Location"))
	cb := b.get(t, loc.String())
	if got := cb.header.Get("Location"); got != "/console/audit?decision=deny" {
		t.Errorf("after sign-in, sent to %q, want the page asked for", got)
	}
}

func TestSessionLifetime(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signIn(t, "alice@example.com", alicePW)

	// Past the access token's lifetime the console refreshes it.
	f.clock.Advance(50 * time.Minute)
	if p := b.get(t, "/console/clusters"); byID(p.doc, "clusters") == nil {
		t.Fatalf("after the access token expired, the page is not shown:\n%s", p.body)
	}
	// An hour unused ends the session.
	f.clock.Advance(61 * time.Minute)
	if p := b.get(t, "/console/clusters"); byID(p.doc, "sign-in") == nil {
		t.Errorf("after an idle hour, still signed in:\n%s", p.body)
	}
	// The table's own refreshes do not keep it alive.
	b.signIn(t, "alice@example.com", alicePW)
	f.clock.Advance(50 * time.Minute)
	if p := b.get(t, "/console/clusters?partial=1"); p.status != http.StatusOK || byID(p.doc, "clusters") == nil {
		t.Fatalf("partial refresh: %d\n%s", p.status, p.body)
	}
	f.clock.Advance(20 * time.Minute)
	if p := b.get(t, "/console/clusters?partial=1"); p.status != http.StatusUnauthorized {
		t.Errorf("partial refresh after 70 idle minutes: %d, want 401 (the script then reloads to the sign-in)", p.status)
	}
	// Eight hours end it however busy it is.
	b.signIn(t, "alice@example.com", alicePW)
	for range 9 {
		f.clock.Advance(55 * time.Minute)
		b.get(t, "/console/clusters")
	}
	if p := b.get(t, "/console/clusters"); byID(p.doc, "sign-in") == nil {
		t.Errorf("after 8 hours, still signed in:\n%s", p.body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	signedOut := []string{"/console/", "/console/clusters", "/console/static/console.js", "/console/static/console.css", "/console/nowhere", "/console/auth/callback?state=x"}
	_, landed := b.signIn(t, "alice@example.com", alicePW)
	token := csrf(t, landed)
	check := func(t *testing.T, p *page, wantNoStore bool) {
		got := map[string]string{"csp": p.header.Get("Content-Security-Policy"), "nosniff": p.header.Get("X-Content-Type-Options"), "referrer": p.header.Get("Referrer-Policy")}
		want := map[string]string{"csp": wantCSP, "nosniff": "nosniff", "referrer": "same-origin"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: headers (-want +got):\n%s", p.url.Path, diff)
		}
		if wantNoStore && p.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", p.url.Path, p.header.Get("Cache-Control"))
		}
		if p.doc != nil {
			// No inline script or style: every script has a src, no style
			// element or attribute, no on* handler.
			for _, n := range findAll(p.doc, func(*html.Node) bool { return true }) {
				if n.Data == "script" && attr(n, "src") == "" || n.Data == "style" || attr(n, "style") != "" {
					t.Errorf("%s: inline script or style: <%s>", p.url.Path, n.Data)
				}
				for _, a := range n.Attr {
					if strings.HasPrefix(a.Key, "on") {
						t.Errorf("%s: inline handler %s", p.url.Path, a.Key)
					}
				}
			}
		}
	}
	anon := f.browser(t)
	for _, path := range signedOut {
		t.Run("signed out "+path, func(t *testing.T) { check(t, anon.get(t, path), !strings.Contains(path, "/static/")) })
	}
	for _, path := range []string{"/console/clusters", "/console/clusters/prod/none", "/console/assignments", "/console/audit", "/console/connect", "/console/audit?since=bogus"} {
		t.Run("signed in "+path, func(t *testing.T) { check(t, b.get(t, path), true) })
	}
	t.Run("post", func(t *testing.T) {
		check(t, b.post(t, "/console/connect", url.Values{"csrf": {token}, "group": {"Bad Group"}, "name": {"x"}}, nil), true)
	})
}

func TestCSRF(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	_, landed := b.signIn(t, "alice@example.com", alicePW)
	token := csrf(t, landed)
	form := func(tok string) url.Values {
		return url.Values{"csrf": {tok}, "assignee": {f.bobID}, "role": {"cluster-user"}, "scope": {"/groups/prod"}}
	}
	tests := []struct {
		name string
		form url.Values
		hdr  http.Header
		want int
	}{
		{"no token", form(""), nil, http.StatusForbidden},
		{"wrong token", form(strings.Repeat("A", len(token))), nil, http.StatusForbidden},
		{"other origin", form(token), http.Header{"Origin": {"https://evil.example"}}, http.StatusForbidden},
		{"cross-site fetch", form(token), http.Header{"Sec-Fetch-Site": {"cross-site"}}, http.StatusForbidden},
		{"same origin with token", form(token), nil, http.StatusSeeOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := b.post(t, "/console/assignments", tt.form, tt.hdr)
			if p.status != tt.want {
				t.Errorf("answered %d, want %d:\n%s", p.status, tt.want, p.body)
			}
			if tt.want == http.StatusForbidden && byID(p.doc, "error") == nil {
				t.Errorf("refusal without #error:\n%s", p.body)
			}
		})
	}
	var as []hub.AssignmentView
	f.admin(t, http.MethodGet, "/api/v1/role-assignments?assignee="+f.bobID, nil, &as)
	if len(as) != 1 {
		t.Errorf("bob has %d assignments after one accepted form, want 1: %+v", len(as), as)
	}
	// Another session's token does not pass.
	other := f.browser(t)
	_, otherPage := other.signIn(t, "alice@example.com", alicePW)
	if p := b.post(t, "/console/assignments/"+as[0].ID+"/delete", url.Values{"csrf": {csrf(t, otherPage)}}, nil); p.status != http.StatusForbidden {
		t.Errorf("another session's CSRF token: %d, want 403", p.status)
	}
	// A signed-out form is refused too.
	if p := f.browser(t).post(t, "/console/assignments", form(token), nil); p.status != http.StatusForbidden {
		t.Errorf("signed-out form: %d, want 403", p.status)
	}
}

// TestVisibility: the console shows what the API shows the principal; a
// principal without roles sees no clusters and gets readable errors.
func TestVisibility(t *testing.T) {
	f := newFixture(t)
	f.admin(t, http.MethodPost, "/api/v1/clusters", hub.ClusterRequest{Group: "prod", Name: "web"}, nil)
	f.admin(t, http.MethodPost, "/api/v1/clusters", hub.ClusterRequest{Group: "dev", Name: "api"}, nil)

	alice := f.browser(t)
	_, p := alice.signIn(t, "alice@example.com", alicePW)
	rows := clusterRows(p)
	if diff := cmp.Diff([]string{"dev/api", "prod/web"}, rowKeys(rows)); diff != "" {
		t.Errorf("alice's clusters (-want +got):\n%s", diff)
	}
	r := rows[1]
	got := map[string]string{"name": cell(r, "name"), "group": cell(r, "group"), "location": cell(r, "location"), "status": cell(r, "status"),
		"last-seen": cell(r, "last-seen"), "agent-version": cell(r, "agent-version"), "kubernetes-version": cell(r, "kubernetes-version"), "nodes": cell(r, "nodes")}
	want := map[string]string{"name": "web", "group": "prod", "location": "local", "status": "Connecting", "last-seen": "never", "agent-version": "-", "kubernetes-version": "-", "nodes": "unknown"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("prod/web row (-want +got):\n%s", diff)
	}
	if st := find(r, func(n *html.Node) bool { return hasClass(n, "status") }); !hasClass(st, "status-connecting") {
		t.Errorf("status cell classes %q: want status-connecting", attr(st, "class"))
	}
	// Filter and sort, on the server.
	if diff := cmp.Diff([]string{"prod/web"}, rowKeys(clusterRows(alice.get(t, "/console/clusters?q=PRO")))); diff != "" {
		t.Errorf("filter q=PRO (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"prod/web", "dev/api"}, rowKeys(clusterRows(alice.get(t, "/console/clusters?sort=-group")))); diff != "" {
		t.Errorf("sort=-group (-want +got):\n%s", diff)
	}
	// The table alone, for the page's refresh.
	partial := alice.get(t, "/console/clusters?partial=1")
	if byID(partial.doc, "clusters") == nil || byID(partial.doc, "whoami") != nil {
		t.Errorf("partial=1 is not the table alone:\n%s", partial.body)
	}

	bob := f.browser(t)
	_, p = bob.signIn(t, "bob@example.com", bobPW)
	if rows := clusterRows(p); len(rows) != 0 {
		t.Errorf("bob, without roles, sees clusters %v", rowKeys(rows))
	}
	if p := bob.get(t, "/console/clusters/prod/web"); p.status != http.StatusForbidden || !strings.Contains(text(byID(p.doc, "error")), "clusters/read") {
		t.Errorf("bob's view of prod/web: %d %q, want 403 with the API's message", p.status, text(byID(p.doc, "error")))
	}
	created := bob.post(t, "/console/assignments", url.Values{"csrf": {csrf(t, p)}, "assignee": {f.bobID}, "role": {"owner"}, "scope": {"/"}}, nil)
	msg := text(byID(created.doc, "error"))
	if created.status != http.StatusForbidden || !strings.Contains(msg, "assignments/write") || strings.Contains(msg, "{") {
		t.Errorf("bob creating an assignment: %d %q, want 403 with a readable message", created.status, msg)
	}
	if p := bob.get(t, "/console/audit"); p.status != http.StatusForbidden || byID(p.doc, "error") == nil {
		t.Errorf("bob's audit page: %d, want 403 with #error", p.status)
	}
	// Bob, given Reader on prod, sees prod/web only; the audit trail
	// (which needs audit/read at the root) is hidden with a note.
	f.admin(t, http.MethodPost, "/api/v1/role-assignments", hub.AssignmentRequest{Role: "reader", Assignee: f.bobID, Scope: "/groups/prod"}, nil)
	if diff := cmp.Diff([]string{"prod/web"}, rowKeys(clusterRows(bob.get(t, "/console/clusters")))); diff != "" {
		t.Errorf("bob as reader of prod (-want +got):\n%s", diff)
	}
	detail := bob.get(t, "/console/clusters/prod/web")
	if byID(detail.doc, "cluster-audit") != nil || byID(detail.doc, "cluster-audit-note") == nil || byID(detail.doc, "cluster-assignments") == nil {
		t.Errorf("bob's cluster page: want assignments, and the audit hidden with a note:\n%s", detail.body)
	}
}

func clusterRows(p *page) []*html.Node {
	return findAll(byID(p.doc, "clusters"), func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-cluster") != "" })
}

func rowKeys(rows []*html.Node) []string {
	out := []string{}
	for _, r := range rows {
		out = append(out, attr(r, "data-cluster"))
	}
	return out
}

func TestAssignments(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	_, p := b.signIn(t, "alice@example.com", alicePW)
	p = b.get(t, "/console/assignments")
	// The role choices are the API's role definitions.
	options := findAll(find(byID(p.doc, "new-assignment"), func(n *html.Node) bool { return n.Data == "select" && attr(n, "name") == "role" }),
		func(n *html.Node) bool { return n.Data == "option" })
	var roles []hub.RoleView
	f.admin(t, http.MethodGet, "/api/v1/role-definitions", nil, &roles)
	if len(options) != len(roles) || attr(options[0], "value") != roles[0].ID || text(options[0]) != roles[0].Name {
		t.Errorf("role options %d (first %q %q), want the %d role definitions", len(options), attr(options[0], "value"), text(options[0]), len(roles))
	}
	if byID(p.doc, "create-assignment") == nil || find(byID(p.doc, "new-assignment"), func(n *html.Node) bool { return attr(n, "name") == "scope" }) == nil {
		t.Fatalf("no create form:\n%s", p.body)
	}

	// By login name: the directory API resolves it.
	created := b.post(t, "/console/assignments", url.Values{"csrf": {csrf(t, p)}, "assignee": {"bob@example.com"}, "assigneeType": {"user"},
		"role": {"kubernetes-viewer"}, "scope": {"/groups/prod/clusters/web"}}, nil)
	if created.status != http.StatusSeeOther || !strings.HasPrefix(created.header.Get("Location"), "/console/assignments?created=") {
		t.Fatalf("create answered %d %q:\n%s", created.status, created.header.Get("Location"), created.body)
	}
	list := b.follow(t, created)
	id := strings.TrimPrefix(created.header.Get("Location"), "/console/assignments?created=")
	if flash := text(byID(list.doc, "flash")); !strings.Contains(flash, id) {
		t.Errorf("#flash %q: want the new assignment %s", flash, id)
	}
	row := find(byID(list.doc, "assignments"), func(n *html.Node) bool { return attr(n, "data-assignment-id") == id })
	got := map[string]string{"principal": cell(row, "principal"), "role": cell(row, "role"), "scope": cell(row, "scope")}
	want := map[string]string{"principal": f.bobID, "role": "Kubernetes Viewer", "scope": "/groups/prod/clusters/web"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("new row (-want +got):\n%s", diff)
	}
	// A refusal keeps the form and shows the API's message.
	bad := b.post(t, "/console/assignments", url.Values{"csrf": {csrf(t, list)}, "assignee": {f.bobID}, "role": {"owner"}, "scope": {"/groups/Prod"}}, nil)
	if bad.status != http.StatusBadRequest || byID(bad.doc, "error") == nil || !strings.Contains(bad.body, `value="/groups/Prod"`) {
		t.Errorf("bad scope: %d %q", bad.status, text(byID(bad.doc, "error")))
	}
	unknown := b.post(t, "/console/assignments", url.Values{"csrf": {csrf(t, list)}, "assignee": {"nobody@example.com"}, "role": {"owner"}, "scope": {"/"}}, nil)
	if unknown.status != http.StatusNotFound || !strings.Contains(text(byID(unknown.doc, "error")), "nobody@example.com") {
		t.Errorf("unknown assignee: %d %q", unknown.status, text(byID(unknown.doc, "error")))
	}

	// Delete through the row's form.
	del := find(row, func(n *html.Node) bool { return n.Data == "form" && hasClass(n, "delete-assignment") })
	if text(del) != "Delete" {
		t.Errorf("delete button text %q", text(del))
	}
	gone := b.post(t, attr(del, "action"), formValues(del), nil)
	if gone.status != http.StatusSeeOther {
		t.Fatalf("delete answered %d:\n%s", gone.status, gone.body)
	}
	list = b.follow(t, gone)
	if find(byID(list.doc, "assignments"), func(n *html.Node) bool { return attr(n, "data-assignment-id") == id }) != nil {
		t.Errorf("assignment %s still listed after delete", id)
	}

	// Both changes are in the audit trail as alice, from the browser's
	// address.
	var page hub.AuditPage
	var verbs []string
	waitFor(t, func() bool {
		f.admin(t, http.MethodGet, "/api/v1/audit?type=change&principal="+f.aliceID, nil, &page)
		verbs = verbs[:0]
		for _, e := range page.Events {
			verbs = append(verbs, e.Verb+" "+e.Path)
		}
		return slices.Contains(verbs, "delete /api/v1/role-assignments/"+id)
	})
	if !slices.Contains(verbs, "create /api/v1/role-assignments") {
		t.Errorf("audit changes %q: want the create", verbs)
	}
	for _, e := range page.Events {
		if !strings.HasPrefix(e.SourceAddr, "127.0.0.1:") || e.PrincipalName != "Alice Liddell" {
			t.Errorf("change event %+v: want alice from 127.0.0.1", e)
		}
	}
}

// waitFor polls cond until it holds, for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met within 10 s")
		case <-tick.C:
		}
	}
}

func TestConnect(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	_, p := b.signIn(t, "alice@example.com", alicePW)
	p = b.get(t, "/console/connect")
	form := func() url.Values {
		return url.Values{"csrf": {csrf(t, p)}, "group": {"edge"}, "name": {"store-12"}, "location": {"local"}, "mode": {"kubernetes-rbac"}}
	}
	first := b.post(t, "/console/connect", form(), nil)
	cmds := text(byID(first.doc, "connect-commands"))
	if first.status != http.StatusOK || !strings.Contains(cmds, "--from-literal=token=tjt_") || !strings.Contains(cmds, "--set hub.url="+f.url) ||
		!strings.Contains(cmds, "tether agent --hub "+f.url) || !strings.Contains(cmds, "helm install tether-agent deploy/helm/tether-agent") {
		t.Fatalf("connect answered %d with commands:\n%s", first.status, cmds)
	}
	token := cmds[strings.Index(cmds, "tjt_"):]
	token = token[:strings.IndexAny(token, " \n")]
	if strings.Contains(first.url.String(), token) || first.header.Get("Location") != "" {
		t.Error("the join token is in a URL")
	}
	var view hub.ClusterView
	f.admin(t, http.MethodGet, "/api/v1/groups/edge/clusters/store-12", nil, &view)
	if view.Mode != "kubernetes-rbac" {
		t.Errorf("registered cluster %+v", view)
	}
	// Again: the cluster is reused, with a new token.
	second := b.post(t, "/console/connect", form(), nil)
	cmds2 := text(byID(second.doc, "connect-commands"))
	if second.status != http.StatusOK || !strings.Contains(text(byID(second.doc, "connect-result")), "registered already") || strings.Contains(cmds2, token) {
		t.Errorf("second connect: %d %q", second.status, text(byID(second.doc, "connect-result")))
	}
	// Another mode is refused with what to do.
	other := form()
	other.Set("mode", "hub-rbac")
	if p := b.post(t, "/console/connect", other, nil); p.status != http.StatusConflict || !strings.Contains(text(byID(p.doc, "error")), "kubernetes-rbac mode") {
		t.Errorf("connect in another mode: %d %q", p.status, text(byID(p.doc, "error")))
	}
	// Bob may not.
	bob := f.browser(t)
	_, bp := bob.signIn(t, "bob@example.com", bobPW)
	bf := url.Values{"csrf": {csrf(t, bp)}, "group": {"edge"}, "name": {"store-13"}}
	if p := bob.post(t, "/console/connect", bf, nil); p.status != http.StatusForbidden || byID(p.doc, "connect-commands") != nil {
		t.Errorf("bob connecting: %d", p.status)
	}
}

func TestAuditPage(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signIn(t, "alice@example.com", alicePW)
	// Gateway requests to two clusters, stored as the hub's audit trail
	// has them.
	now := f.clock.Now()
	var events []audit.Event
	for i := range 6 {
		e := audit.Event{Time: now.Add(-time.Duration(i) * time.Minute), Type: audit.TypeRequest, Cluster: store.ClusterID("prod", "web"), Decision: audit.DecisionAllow,
			Verb: "get", Resource: "pods", Status: 200, PrincipalID: f.aliceID, PrincipalName: "Alice Liddell"}
		if i%3 == 0 {
			e.Decision, e.Status = audit.DecisionDeny, 403
		}
		events = append(events, e)
	}
	events = append(events, audit.Event{Time: now.Add(-2 * time.Hour), Type: audit.TypeRequest, Cluster: store.ClusterID("dev", "api"), Decision: audit.DecisionAllow, Verb: "list", Status: 200})
	if err := appendAudit(t, f.store, events); err != nil {
		t.Fatal(err)
	}
	p := b.get(t, "/console/audit")
	if p.status != http.StatusOK || byID(p.doc, "audit-search") == nil {
		t.Fatalf("audit page %d:\n%s", p.status, p.body)
	}
	rows := findAll(byID(p.doc, "audit"), func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "audit-event") })
	if len(rows) < 7 {
		t.Errorf("%d audit rows, want at least the 7 stored", len(rows))
	}
	chart := byID(p.doc, "audit-chart")
	if chart == nil || chart.Data != "svg" {
		t.Fatalf("no svg#audit-chart:\n%s", p.body)
	}
	var titles []string
	for _, g := range findAll(chart, func(n *html.Node) bool { return n.Data == "g" && hasClass(n, "series") }) {
		titles = append(titles, text(find(g, func(n *html.Node) bool { return n.Data == "title" })))
	}
	slices.Sort(titles)
	if diff := cmp.Diff([]string{"denials to dev/api: 0", "denials to prod/web: 2", "requests to dev/api: 1", "requests to prod/web: 6"}, titles); diff != "" {
		t.Errorf("chart series titles (-want +got):\n%s", diff)
	}
	// Search: denials of prod/web only.
	p = b.get(t, "/console/audit?cluster=prod/web&decision=deny&since=1h")
	rows = findAll(byID(p.doc, "audit"), func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "audit-event") })
	if len(rows) != 2 {
		t.Errorf("deny search: %d rows, want 2", len(rows))
	}
	if p := b.get(t, "/console/audit?since=yesterday"); p.status != http.StatusBadRequest || !strings.Contains(text(byID(p.doc, "error")), "24h") {
		t.Errorf("bad since: %d %q", p.status, text(byID(p.doc, "error")))
	}
	// The cluster page shows the cluster's recent events, newest first.
	if p := b.get(t, "/console/clusters/prod/web"); p.status != http.StatusNotFound || !strings.Contains(text(byID(p.doc, "error")), `no cluster "web"`) {
		t.Errorf("unregistered cluster's page: %d %q, want 404 with the API's message", p.status, text(byID(p.doc, "error")))
	}
	f.admin(t, http.MethodPost, "/api/v1/clusters", hub.ClusterRequest{Group: "prod", Name: "web"}, nil)
	detail := b.get(t, "/console/clusters/prod/web")
	rows = findAll(byID(detail.doc, "cluster-audit"), func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "audit-event") })
	if len(rows) != 6 || cell(rows[0], "decision") != "deny" || cell(rows[1], "decision") != "allow" {
		t.Errorf("cluster-audit: %d rows, want the 6 requests to prod/web, newest (a denial) first:\n%s", len(rows), detail.body)
	}
	if n := find(byID(detail.doc, "cluster-assignments"), func(n *html.Node) bool { return attr(n, "data-assignment-id") != "" }); cell(n, "role") != "Owner" {
		t.Errorf("cluster-assignments: want alice's Owner at the root, inherited:\n%s", detail.body)
	}
}

func TestChartEmpty(t *testing.T) {
	f := newFixture(t)
	b := f.browser(t)
	b.signIn(t, "alice@example.com", alicePW)
	p := b.get(t, "/console/audit?type=request")
	chart := byID(p.doc, "audit-chart")
	if chart == nil || find(chart, func(n *html.Node) bool { return hasClass(n, "series") }) != nil || !strings.Contains(text(chart), "No cluster requests") {
		t.Errorf("chart without requests:\n%s", p.body)
	}
}

// appendAudit stores events as the hub's auditor does.
func appendAudit(t *testing.T, st store.Store, events []audit.Event) error {
	t.Helper()
	_, err := st.AppendAudit(t.Context(), events)
	return err
}
