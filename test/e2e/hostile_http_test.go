package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/identity"
	"tether.dev/tether/test/testenv"
)

// signedInUser makes a person in the hub's embedded directory with Cluster
// User on the environment's cluster and the view ClusterRole bound to its
// object ID, and returns an access token for it (signed with the hub's
// issuer key, as the hub would sign it) and the object ID.
func signedInUser(t *testing.T, ctx context.Context, e *testenv.Env, hc *http.Client, upn string) (token, oid string) {
	t.Helper()
	iss := loadEmbeddedIssuer(t, e, hc)
	out, err := e.TetherCmd(ctx, "ad", "user", "create", "--display-name", upn, "--user-principal-name", upn, "-o", "json").Output()
	if err != nil {
		t.Fatalf("create a user: %v", testenv.ExitDetail(err))
	}
	var u struct{ ID string }
	if err := json.Unmarshal(out, &u); err != nil || u.ID == "" {
		t.Fatalf("ad user create printed %s (%v)", out, err)
	}
	clusterID := "/groups/" + e.Group + "/clusters/" + e.Name
	if out, err := e.TetherCmd(ctx, "role", "assignment", "create", "--role", "Cluster User", "--assignee", u.ID, "--scope", clusterID).CombinedOutput(); err != nil {
		t.Fatalf("assign Cluster User: %v\n%s", err, out)
	}
	binding := "view-" + strings.ReplaceAll(upn, "@", "-at-")
	if out, err := e.Cluster.Kubectl(ctx, "create", "clusterrolebinding", binding, "--clusterrole", "view", "--user", u.ID).CombinedOutput(); err != nil {
		t.Fatalf("bind view: %v\n%s", err, out)
	}
	t.Cleanup(func() { e.Cluster.Kubectl(context.Background(), "delete", "clusterrolebinding", binding).Run() })
	now := time.Now()
	return signES256(t, iss.key, iss.kid, map[string]any{
		"iss": iss.url, "sub": u.ID, "oid": u.ID, "aud": "tether", "azp": "tether-cli", "idtyp": "user",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "name": upn,
	}), u.ID
}

// TestHostileHeaders sends the gateway every header a client might use to
// choose who it is at the API server, or where it came from, in several
// spellings, over HTTP/1.1 and HTTP/2. The API server's audit log must show
// exactly what the hub vouched for: with a service-account token that
// account, not impersonated, from the agent's address; signed in, the
// agent impersonating the person the hub verified, with the groups the hub
// sent and nothing else.
func TestHostileHeaders(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leakCheck(t, e)
	hc := hubClient(t, e)
	tc, err := e.HubTLS()
	if err != nil {
		t.Fatal(err)
	}
	h2tr := &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: true}
	t.Cleanup(h2tr.CloseIdleConnections)
	h2 := &http.Client{Transport: h2tr, Timeout: 30 * time.Second}
	audit := newAPIAudit(t, e)
	agentAddr := []string{e.NS.InsideIP().String()}

	send := func(t *testing.T, c *http.Client, token, marker string, header map[string][]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, gatewayURL(e)+"/api/v1/namespaces/default/pods?limit=1", nil)
		for k, v := range header {
			req.Header[k] = v // as written: no canonical casing
		}
		req.Header["Authorization"] = append([]string{"Bearer " + token}, req.Header["Authorization"]...)
		req.Header.Set("User-Agent", marker)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if c == h2 && resp.ProtoMajor != 2 {
			t.Fatalf("the hub answered over %s, want HTTP/2", resp.Proto)
		}
		return resp.StatusCode, string(b)
	}

	t.Run("service-account token", func(t *testing.T) {
		tests := []struct {
			name   string
			http2  bool
			header map[string][]string
		}{
			{name: "Impersonate-User and -Group", header: map[string][]string{"Impersonate-User": {"system:admin"}, "Impersonate-Group": {"system:masters"}}},
			{name: "impersonation in lower and upper case", header: map[string][]string{"impersonate-user": {"system:admin"}, "IMPERSONATE-GROUP": {"system:masters"}}},
			{name: "Impersonate-Uid and -Extra-*", header: map[string][]string{"Impersonate-User": {"system:admin"}, "Impersonate-Uid": {"0"},
				"Impersonate-Extra-Scopes": {"all"}, "Impersonate-Extra-Acme.com%2fproject": {"x"}}},
			{name: "impersonation over HTTP/2", http2: true, header: map[string][]string{"impersonate-user": {"system:admin"}, "impersonate-group": {"system:masters"}}},
			{name: "Impersonate_User (underscore) is no header the API server reads", header: map[string][]string{"Impersonate_User": {"system:admin"}}},
			{name: "front-proxy identity X-Remote-User and -Group", header: map[string][]string{"X-Remote-User": {"system:admin"}, "x-remote-group": {"system:masters"},
				"X-Remote-Extra-Scopes": {"all"}, "X-Remote-Uid": {"0"}}},
			{name: "a second Authorization header", header: map[string][]string{"Authorization": {"Bearer another-token"}}},
			{name: "a forged assertion", header: map[string][]string{identity.AssertionHeader: {"eyJhbGciOiJub25lIn0.e30."}}},
			{name: "Connection naming the assertion, with a forged one", header: map[string][]string{"Connection": {"Tether-Assertion"}, identity.AssertionHeader: {"forged"}}},
			{name: "Connection naming Impersonate-User", header: map[string][]string{"Connection": {"keep-alive, impersonate-user"}, "Impersonate-User": {"system:admin"}}},
			{name: "X-Forwarded-For", header: map[string][]string{"X-Forwarded-For": {"203.0.113.7"}}},
			{name: "x-forwarded-for with a list", header: map[string][]string{"x-forwarded-for": {"203.0.113.7, 198.51.100.1"}}},
			{name: "X-FORWARDED-FOR twice", header: map[string][]string{"X-FORWARDED-FOR": {"203.0.113.7", "198.51.100.1"}}},
			{name: "X-Real-Ip", header: map[string][]string{"X-Real-Ip": {"203.0.113.7"}}},
			{name: "x-real-ip over HTTP/2", http2: true, header: map[string][]string{"x-real-ip": {"203.0.113.7"}, "x-forwarded-for": {"198.51.100.1"}}},
			{name: "Forwarded", header: map[string][]string{"Forwarded": {"for=203.0.113.7;proto=http;host=evil.example"}}},
			{name: "X-Forwarded-Host and -Proto", header: map[string][]string{"X-Forwarded-Host": {"evil.example"}, "X-Forwarded-Proto": {"http"}}},
			{name: "Connection naming X-Forwarded-For", header: map[string][]string{"Connection": {"X-Forwarded-For"}, "X-Forwarded-For": {"203.0.113.7"}}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := newMarker("hdr")
				c := hc
				if tt.http2 {
					c = h2
				}
				code, body := send(t, c, e.SAToken, m, tt.header)
				if code != http.StatusOK || !strings.Contains(body, `"kind":"PodList"`) {
					t.Fatalf("status %d %.300s; want the pod list", code, body)
				}
				ev := audit.completed(t, m)
				if ev.User.Username != saUser || ev.ImpersonatedUser != nil {
					t.Errorf("the API server saw %s impersonating %+v; want %s, no impersonation", ev.User.Username, ev.ImpersonatedUser, saUser)
				}
				if diff := cmp.Diff(agentAddr, ev.SourceIPs); diff != "" {
					t.Errorf("source addresses in the API server's audit log (-want +got):\n%s", diff)
				}
			})
		}
	})

	t.Run("Connection naming Authorization: no credential reaches the cluster", func(t *testing.T) {
		m := newMarker("conn-authz")
		code, body := send(t, hc, e.SAToken, m, map[string][]string{"Connection": {"Authorization"}})
		if code != http.StatusUnauthorized || !strings.Contains(statusMessage(body), "no credentials reached the cluster") {
			t.Errorf("status %d %.300s; want the agent's 401 Status", code, body)
		}
		audit.noneReached(t, e, hc, m)
	})

	for _, upgrade := range []struct{ name, lines string }{
		{"Upgrade: h2c", "Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"},
		{"an unknown upgrade protocol", "Connection: Upgrade, close\r\nUpgrade: tether-smuggle/1\r\n"},
		{"a WebSocket upgrade without its key", "Connection: Upgrade, close\r\nUpgrade: websocket\r\n"},
	} {
		t.Run(upgrade.name+": no protocol switch, the request is the account's", func(t *testing.T) {
			m := newMarker("upgrade")
			raw := fmt.Sprintf("GET /k8s/%s/%s/api/v1/namespaces/default/pods?limit=1 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUser-Agent: %s\r\n%s\r\n",
				e.Group, e.Name, e.HubAddr, e.SAToken, m, upgrade.lines)
			got := rawExchange(t, e, raw)
			if len(got) != 1 || got[0].code != http.StatusOK || !strings.Contains(got[0].body, `"kind":"PodList"`) {
				t.Fatalf("answers %+v; want one: the pod list", got)
			}
			ev := audit.completed(t, m)
			if ev.User.Username != saUser || ev.ImpersonatedUser != nil {
				t.Errorf("the API server saw %s impersonating %+v; want %s", ev.User.Username, ev.ImpersonatedUser, saUser)
			}
		})
	}

	t.Run("signed in: the agent impersonates exactly whom the hub verified", func(t *testing.T) {
		token, oid := signedInUser(t, ctx, e, hc, newMarker("headers")+"@example.com")
		hostile := map[string][]string{
			"Impersonate-User": {"system:admin"}, "impersonate-group": {"system:masters"}, "Impersonate-Uid": {"0"},
			"Impersonate-Extra-Scopes": {"all"}, "X-Remote-User": {"system:admin"}, "X-Remote-Group": {"system:masters"},
			identity.AssertionHeader: {"forged"}, "X-Real-Ip": {"203.0.113.7"}, "X-Forwarded-For": {"203.0.113.7"},
		}
		for _, c := range []*http.Client{hc, h2} {
			m := newMarker("signed-in")
			code, body := send(t, c, token, m, hostile)
			if code != http.StatusOK || !strings.Contains(body, `"kind":"PodList"`) {
				t.Fatalf("status %d %.300s; want the pod list (view)", code, body)
			}
			ev := audit.completed(t, m)
			want := &apiAuditUser{Username: oid, Groups: []string{"system:authenticated"}}
			if diff := cmp.Diff(want, ev.ImpersonatedUser); diff != "" {
				t.Errorf("impersonated at the API server (-want +got):\n%s", diff)
			}
			if ev.User.Username == oid || slices.Contains(ev.User.Groups, "system:masters") && ev.User.Username == "system:admin" {
				t.Errorf("the request was made as %+v; want the agent's own identity", ev.User)
			}
			if diff := cmp.Diff(agentAddr, ev.SourceIPs); diff != "" {
				t.Errorf("source addresses (-want +got):\n%s", diff)
			}
		}
	})
}

// TestHostilePaths: request targets and Host headers that try to reach
// another cluster or another server. The hub cleans or refuses them, or
// they land on the cluster's own API server with the path it would get
// anyway: the agent only ever dials its configured API server.
func TestHostilePaths(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leakCheck(t, e)
	hc := hubClient(t, e)
	audit := newAPIAudit(t, e)
	api, err := url.Parse(e.Cluster.Server)
	if err != nil {
		t.Fatal(err)
	}
	other := startCluster(t, ctx, e, "hostile-paths-b")
	if out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "hostile-paths-idle", "-o", "json").CombinedOutput(); err != nil {
		t.Fatalf("register a cluster without agent: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		e.TetherCmd(context.Background(), "cluster", "delete", "-g", e.Group, "-n", "hostile-paths-idle", "--yes").Run()
	})
	token, _ := signedInUser(t, ctx, e, hc, newMarker("paths")+"@example.com")
	g, n := e.Group, e.Name
	tests := []struct {
		name   string
		method string // GET if empty
		target string // MARKER is replaced by the request's marker
		host   string // the hub's address if empty; "-" for none
		auth   string // the service-account token if empty
		code   int
		want   string // in the body, or the Location of a redirect
		// reaches is the request URI the API server must log (as the
		// service account); empty: nothing may reach it.
		reaches string
	}{
		{name: "dot segments into another cluster", target: "/k8s/" + g + "/" + n + "/../hostile-paths-b/api/v1/namespaces/default/pods?MARKER",
			code: 307, want: "/k8s/" + g + "/hostile-paths-b/api/v1/namespaces/default/pods"},
		{name: "dot segments past the prefix", target: "/k8s/" + g + "/" + n + "/api/v1/../../../hostile-paths-b/api?MARKER", code: 307, want: "/k8s/" + g + "/hostile-paths-b/api"},
		{name: "a single dot segment", target: "/k8s/" + g + "/" + n + "/./api/v1/namespaces/default/pods?MARKER", code: 307, want: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods"},
		{name: "a doubled slash before the prefix", target: "//k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods?MARKER", code: 307, want: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods"},
		{name: "a URL in the path", target: "/k8s/" + g + "/" + n + "/https://evil.example/api?MARKER", code: 307, want: "/k8s/" + g + "/" + n + "/https:/evil.example/api"},
		{name: "an encoded slash in the group", target: "/k8s/" + g + "%2F" + n + "/api/v1/namespaces/default/pods?MARKER", code: 404, want: "no such cluster"},
		{name: "encoded dot segments in the cluster name", target: "/k8s/" + g + "/" + n + "%2F..%2Fhostile-paths-b/api?MARKER", code: 404, want: "no such cluster"},
		{name: "a user-info-like cluster name", target: "/k8s/" + g + "/" + n + "@evil.example/api?MARKER", code: 404, want: "no such cluster"},
		{name: "upper-case names", target: "/k8s/" + strings.ToUpper(g) + "/" + n + "/api?MARKER", code: 404, want: "no such cluster"},
		{name: "encoded dot segments after the prefix", target: "/k8s/" + g + "/" + n + "/%2e%2e/%2e%2e/api/v1/namespaces/default/secrets?MARKER",
			code: 400, want: "segment (perhaps escaped"},
		{name: "encoded dot segments in upper case", target: "/k8s/" + g + "/" + n + "/api/v1/%2E%2E/%2E/secrets?MARKER", code: 400, want: "segment (perhaps escaped"},
		{name: "encoded slashes and dots in a resource name", target: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods/%2e%2e%2f%2e%2e%2fsecrets?MARKER",
			code: 400, want: "segment (perhaps escaped"},
		{name: "an encoded slash in a resource name reaches this cluster's API server, which decodes it",
			target: "/k8s/" + g + "/" + n + "/api/v1/namespaces%2fdefault/pods?limit=1&MARKER", code: 200, want: `"kind":"PodList"`,
			reaches: "/api/v1/namespaces%2fdefault/pods?limit=1&"},
		{name: "a semicolon segment reaches this cluster's API server verbatim", target: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods/..;/secrets?MARKER",
			code: 404, want: `"kind":"Status"`, reaches: "/api/v1/namespaces/default/pods/..;/secrets?"},
		{name: "absolute-form target naming another host", target: "https://evil.example/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods?limit=1&MARKER",
			host: "other.example", code: 200, want: `"kind":"PodList"`, reaches: "/api/v1/namespaces/default/pods?limit=1&"},
		{name: "absolute-form target naming the API server", target: e.Cluster.Server + "/api/v1/namespaces/default/secrets?MARKER", host: api.Host, code: 404, want: "page not found"},
		{name: "CONNECT to the API server", method: "CONNECT", target: api.Host, host: api.Host, code: 405, want: "no CONNECT"},
		{name: "Host: the API server's address", target: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods?limit=1&MARKER", host: api.Host,
			code: 200, want: `"kind":"PodList"`, reaches: "/api/v1/namespaces/default/pods?limit=1&"},
		{name: "Host: kubernetes.default.svc", target: "/k8s/" + g + "/" + n + "/api/v1/namespaces/default/pods?limit=1&MARKER", host: "kubernetes.default.svc",
			code: 200, want: `"kind":"PodList"`, reaches: "/api/v1/namespaces/default/pods?limit=1&"},
		{name: "Host with a space", target: "/k8s/" + g + "/" + n + "/api?MARKER", host: "evil.example bad", code: 400, want: "malformed Host header"},
		{name: "no Host header", target: "/k8s/" + g + "/" + n + "/api?MARKER", host: "-", code: 400, want: "missing required Host header"},
		{name: "another cluster, signed in with a role on this one only", target: "/k8s/" + g + "/" + other.name + "/api/v1/namespaces/default/pods?MARKER",
			auth: token, code: 403, want: "Cluster User"},
		{name: "a registered cluster without agent, with a made-up token", target: "/k8s/" + g + "/hostile-paths-idle/api/v1/namespaces/default/pods?MARKER",
			auth: "made-up", code: 503, want: "is not connected"},
		{name: "a cluster never registered", target: "/k8s/" + g + "/hostile-paths-none/api?MARKER", code: 404, want: "not registered"},
	}
	var refused []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMarker("path")
			method, host, auth := tt.method, tt.host, tt.auth
			if method == "" {
				method = "GET"
			}
			switch host {
			case "":
				host = "Host: " + e.HubAddr + "\r\n"
			case "-":
				host = ""
			default:
				host = "Host: " + host + "\r\n"
			}
			if auth == "" {
				auth = e.SAToken
			}
			target := strings.ReplaceAll(tt.target, "MARKER", m+"=1")
			raw := fmt.Sprintf("%s %s HTTP/1.1\r\n%sAuthorization: Bearer %s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n", method, target, host, auth, m)
			got := rawExchange(t, e, raw)
			if len(got) != 1 {
				t.Fatalf("%d answers %+v; want one", len(got), got)
			}
			r := got[0]
			where := r.body
			if r.code/100 == 3 {
				where = r.header.Get("Location")
			}
			if r.code != tt.code || !strings.Contains(where, tt.want) {
				t.Errorf("status %d, %.300q; want %d and %q", r.code, where, tt.code, tt.want)
			}
			if r.code >= 400 && strings.TrimSpace(r.body) == "" {
				t.Errorf("a refusal without a message")
			}
			if tt.reaches == "" {
				refused = append(refused, m)
				return
			}
			ev := audit.completed(t, m)
			if !strings.HasPrefix(ev.RequestURI, tt.reaches) || ev.User.Username != saUser || ev.ImpersonatedUser != nil {
				t.Errorf("the API server got %s as %s (impersonating %+v); want %s... as %s", ev.RequestURI, ev.User.Username, ev.ImpersonatedUser, tt.reaches, saUser)
			}
		})
	}
	t.Run("none of the refused requests reached the API server", func(t *testing.T) {
		audit.noneReached(t, e, hc, refused...)
	})
}

// TestHostileSmuggling sends, over raw TLS connections, requests whose
// framing is ambiguous or broken. Each is refused by the hub, or framed the
// one way the hub reads it and passed on re-framed: no bytes the hub took
// for body become a request at the API server, and no broken body creates
// anything there.
func TestHostileSmuggling(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leakCheck(t, e)
	hc := hubClient(t, e)
	audit := newAPIAudit(t, e)
	configMaps := "/k8s/" + e.Group + "/" + e.Name + "/api/v1/namespaces/default/configmaps"
	post := func(m string, lines ...string) string {
		return fmt.Sprintf("POST %s?%s=1 HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nUser-Agent: %s\r\nContent-Type: application/json\r\n%s\r\n",
			configMaps, m, e.HubAddr, e.SAToken, m, strings.Join(append(lines, ""), "\r\n"))
	}
	object := func(name string) string {
		return fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q}}`, name)
	}
	chunked := func(s string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(s), s) }
	// smuggled is a whole request with no credentials, hidden in a body.
	smuggled := func(m string) string {
		return fmt.Sprintf("GET /k8s/%s/%s/api/v1/namespaces/default/secrets?%s=1 HTTP/1.1\r\nHost: %s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n",
			e.Group, e.Name, m, e.HubAddr, m)
	}
	created := func(t *testing.T, name string) bool {
		t.Helper()
		out, err := e.Cluster.Kubectl(ctx, "get", "configmap", name, "-n", "default", "-o", "name", "--ignore-not-found").Output()
		if err != nil {
			t.Fatalf("kubectl get configmap: %v", testenv.ExitDetail(err))
		}
		if strings.TrimSpace(string(out)) != "" {
			e.Cluster.Kubectl(ctx, "delete", "configmap", name, "-n", "default").Run()
			return true
		}
		return false
	}

	// Each request carries a marker m (query, User-Agent) and creates, if
	// it gets through, the configmap obj.
	refusals := []struct {
		name    string
		request func(m, obj string) string
		code    int
		want    string
	}{
		{"two different Content-Lengths", func(m, obj string) string {
			return post(m, fmt.Sprintf("Content-Length: %d", len(object(obj))), "Content-Length: 3") + object(obj)
		}, 400, "Bad Request"},
		{"a negative Content-Length", func(m, obj string) string { return post(m, "Content-Length: -1") + object(obj) }, 400, "Bad Request"},
		{"a signed Content-Length", func(m, obj string) string {
			return post(m, fmt.Sprintf("Content-Length: +%d", len(object(obj)))) + object(obj)
		}, 400, "Bad Request"},
		{"an unknown Transfer-Encoding", func(m, obj string) string { return post(m, "Transfer-Encoding: xchunked") + chunked(object(obj)) }, 501, "Unsupported transfer encoding"},
		{"chunked, then identity", func(m, obj string) string {
			return post(m, "Transfer-Encoding: chunked, identity") + chunked(object(obj))
		}, 501, "Unsupported transfer encoding"},
		{"Transfer-Encoding twice", func(m, obj string) string {
			return post(m, "Transfer-Encoding: chunked", "Transfer-Encoding: chunked") + chunked(object(obj))
		}, 501, "Unsupported transfer encoding"},
		{"a space before the colon", func(m, obj string) string { return post(m, "Transfer-Encoding : chunked") + chunked(object(obj)) }, 400, "invalid header name"},
		{"a header name with a control character", func(m, obj string) string { return post(m, "Transfer-Encoding\x0b: chunked") + chunked(object(obj)) }, 400, "Bad Request"},
	}
	var refused []string
	for _, tt := range refusals {
		t.Run("refused: "+tt.name, func(t *testing.T) {
			m, obj := newMarker("smuggle"), newMarker("obj")
			refused = append(refused, m)
			got := rawExchange(t, e, tt.request(m, obj))
			if len(got) != 1 || got[0].code != tt.code || !strings.Contains(got[0].body, tt.want) {
				t.Fatalf("answers %+v; want one %d saying %q", got, tt.code, tt.want)
			}
			if created(t, obj) {
				t.Errorf("configmap %s was created", obj)
			}
		})
	}
	t.Run("nothing refused reached the API server", func(t *testing.T) { audit.noneReached(t, e, hc, refused...) })

	// Both framings at once: Transfer-Encoding wins (RFC 9112 6.3), the
	// hub drops the Content-Length and frames the body anew for the agent.
	// Whatever follows the chunked body is a request of its own, here one
	// without credentials, which the hub refuses itself.
	t.Run("Content-Length and Transfer-Encoding: the chunked body counts, the rest is a request of its own", func(t *testing.T) {
		for _, tc := range []struct{ name, lengthFor string }{
			{"Content-Length shorter than the body (CL.TE)", "short"},
			{"Content-Length covering a smuggled request (TE.CL)", "all"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				m, obj, hidden := newMarker("clte"), newMarker("obj"), newMarker("hidden")
				body := chunked(object(obj)) + smuggled(hidden)
				length := 5
				if tc.lengthFor == "all" {
					length = len(body)
				}
				got := rawExchange(t, e, post(m, fmt.Sprintf("Content-Length: %d", length), "Transfer-Encoding: chunked")+body)
				if len(got) != 2 || got[0].code != http.StatusCreated || got[1].code != http.StatusUnauthorized ||
					!strings.Contains(statusMessage(got[1].body), "no credentials") {
					t.Fatalf("answers %+v; want 201 for the chunked body, then the hub's 401 for the request after it", got)
				}
				if !created(t, obj) {
					t.Errorf("configmap %s, the chunked body, was not created", obj)
				}
				if ev := audit.completed(t, m); ev.User.Username != saUser {
					t.Errorf("created as %s, want %s", ev.User.Username, saUser)
				}
				audit.noneReached(t, e, hc, hidden)
			})
		}
	})

	// A body that breaks off with a framing error: the client's fault, a
	// 400. The hub streams bodies, so the API server may already have the
	// headers when the error comes; the request is then cancelled there,
	// and nothing is created.
	broken := []struct {
		name string
		body func(obj string) string
	}{
		{"a chunk size that is not hex", func(obj string) string { return "zz\r\n" + obj + "\r\n0\r\n\r\n" }},
		{"a chunk shorter than its data", func(obj string) string { return "5\r\n" + obj + "\r\n0\r\n\r\n" }},
		{"a chunk size beyond 64 bits", func(obj string) string { return "ffffffffffffffffff\r\n" + obj + "\r\n0\r\n\r\n" }},
		{"chunk lines ending in a bare LF", func(obj string) string { return fmt.Sprintf("%x\n%s\n0\n\n", len(obj), obj) }},
	}
	for _, tt := range broken {
		t.Run("broken chunked body: "+tt.name, func(t *testing.T) {
			m, obj := newMarker("chunks"), newMarker("obj")
			got := rawExchange(t, e, post(m, "Transfer-Encoding: chunked")+tt.body(object(obj)))
			if len(got) == 0 || got[0].code != 400 || !strings.Contains(statusMessage(got[0].body), "malformed") {
				t.Fatalf("answers %+v; want 400 with a Status saying the body is malformed", got)
			}
			if created(t, obj) {
				t.Errorf("configmap %s was created from a broken body", obj)
			}
			for _, l := range audit.lines(t, m) {
				var ev apiAuditEvent
				json.Unmarshal([]byte(l), &ev)
				if ev.ResponseStatus != nil && ev.ResponseStatus.Code < 300 {
					t.Errorf("the API server completed the broken request: %s", l)
				}
			}
		})
	}

	t.Run("an obsolete folded line is no Transfer-Encoding", func(t *testing.T) {
		m, obj := newMarker("fold"), newMarker("obj")
		got := rawExchange(t, e, post(m, "X-Note: a", " Transfer-Encoding: chunked")+chunked(object(obj)))
		if len(got) == 0 || got[0].code < 400 {
			t.Fatalf("answers %+v; want the body-less request refused", got)
		}
		if created(t, obj) {
			t.Errorf("configmap %s was created", obj)
		}
	})
}
