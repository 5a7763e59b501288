package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	_ "modernc.org/sqlite"

	"tether.dev/tether/internal/agent"
	"tether.dev/tether/internal/agentkey"
	"tether.dev/tether/internal/tunnel"
	"tether.dev/tether/test/rig"
	"tether.dev/tether/test/testenv"
)

// TestHostileTunnel attacks the agent endpoints: the tunnel upgrade and
// status reports with missing, malformed, misdirected, stale, replayed and
// cross-cluster proofs (cluster A's real key naming cluster B), enrollment
// with used, unknown and expired join tokens, and the agent of a deleted
// cluster. Every refusal is a Status whose message says what failed; no
// tunnel opens.
func TestHostileTunnel(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leakCheck(t, e)
	hc := hubClient(t, e)
	tc, err := e.HubTLS()
	if err != nil {
		t.Fatal(err)
	}
	// Cluster A: the environment's agent, whose key the attacker holds.
	key, a := agentState(t, filepath.Join(e.Dir, "agent"))
	b := startCluster(t, ctx, e, "hostile-tunnel-b")
	now := time.Now()
	sign := func(cluster, aud string, at time.Time) string {
		p, err := agentkey.Sign(key, cluster, aud, at)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// handMade signs claims as given, unknown members and all.
	handMade := func(claims string) string {
		first := base64.RawURLEncoding.EncodeToString([]byte(claims))
		return agentkey.Scheme + " " + first + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(key, []byte(first)))
	}
	dial := func(t *testing.T, authorization string) (int, string) {
		t.Helper()
		h := http.Header{}
		if authorization != "" {
			h.Set("Authorization", authorization)
		}
		tr := &http.Transport{TLSClientConfig: tc.Clone()}
		defer tr.CloseIdleConnections()
		sess, err := tunnel.Dial(ctx, tunnel.DialConfig{URL: "wss://" + e.HubAddr + agent.TunnelPath, Header: h, Client: &http.Client{Transport: tr}})
		if err == nil {
			sess.Close()
			t.Fatal("the hub opened a tunnel")
		}
		var he *tunnel.HandshakeError
		if !errors.As(err, &he) {
			t.Fatalf("dial: %v; want the hub's refusal", err)
		}
		return he.StatusCode, he.Message
	}
	post := func(t *testing.T, path, authorization, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.HubURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", authorization)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, statusMessage(string(out))
	}

	proofs := []struct {
		name  string
		proof string
		code  int
		want  string
	}{
		{"no credentials", "", 401, "not a Tether-Agent proof"},
		{"a service-account token", "Bearer " + e.SAToken, 401, "not a Tether-Agent proof"},
		{"a malformed proof", agentkey.Scheme + " abc.def", 401, "malformed"},
		{"a proof over 2 KiB", agentkey.Scheme + " " + strings.Repeat("a", 3000), 401, "too long"},
		{"cluster A's key, naming cluster B", sign(b.id, e.HubAddr, now), 401, "does not verify with the key registered at enrollment"},
		{"cluster A's key, naming a cluster never registered", sign("/groups/"+e.Group+"/clusters/hostile-nobody", e.HubAddr, now), 404, "not registered on this hub"},
		{"cluster A's key, naming something that is no cluster ID", sign("../../admin", e.HubAddr, now), 404, "not registered on this hub"},
		{"a proof for another hub", sign(a, "hub.evil.example:443", now), 401, `is for hub "hub.evil.example:443"`},
		{"a proof ten minutes old", sign(a, e.HubAddr, now.Add(-10*time.Minute)), 401, "synchronise the clocks"},
		{"a proof from ten minutes ahead", sign(a, e.HubAddr, now.Add(10*time.Minute)), 401, "synchronise the clocks"},
		{"claims with a member more", handMade(fmt.Sprintf(`{"cluster":%q,"aud":%q,"iat":%d,"nonce":"bm9uY2Vub25jZW5vbmNl","admin":true}`, a, e.HubAddr, now.Unix())),
			401, "malformed"},
		{"claims without a nonce", handMade(fmt.Sprintf(`{"cluster":%q,"aud":%q,"iat":%d}`, a, e.HubAddr, now.Unix())), 401, "incomplete"},
	}
	for _, tt := range proofs {
		t.Run("tunnel: "+tt.name, func(t *testing.T) {
			code, msg := dial(t, tt.proof)
			if code != tt.code || !strings.Contains(msg, tt.want) {
				t.Errorf("refused %d %q; want %d saying %q", code, msg, tt.code, tt.want)
			}
		})
	}
	t.Run("tunnel: a replayed proof", func(t *testing.T) {
		p := sign(a, e.HubAddr, time.Now())
		// Its first use, without an upgrade: the proof passes, the request
		// is no tunnel.
		req, _ := http.NewRequest(http.MethodGet, e.HubURL+agent.TunnelPath, nil)
		req.Header.Set("Authorization", p)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(statusMessage(string(body)), "expected a WebSocket upgrade") {
			t.Fatalf("first use: %d %s; want 400 asking for a WebSocket upgrade", resp.StatusCode, body)
		}
		if code, msg := dial(t, p); code != 401 || !strings.Contains(msg, "already used (replayed)") {
			t.Errorf("the same proof again: %d %q; want 401 naming a replay", code, msg)
		}
	})
	t.Run("status report: cluster A's key, naming cluster B", func(t *testing.T) {
		code, msg := post(t, agent.StatusPath, sign(b.id, e.HubAddr, time.Now()), `{"agentVersion":"evil","nodeCount":1}`)
		if code != 401 || !strings.Contains(msg, "does not verify") {
			t.Errorf("%d %q; want 401 saying the signature does not verify", code, msg)
		}
	})
	t.Run("status report: no proof", func(t *testing.T) {
		code, msg := post(t, agent.StatusPath, "", `{"agentVersion":"evil","nodeCount":1}`)
		if code != 401 || !strings.Contains(msg, "not a Tether-Agent proof") {
			t.Errorf("%d %q; want 401", code, msg)
		}
	})

	pub := base64.StdEncoding.EncodeToString(make([]byte, ed25519.PublicKeySize))
	enroll := func(t *testing.T, token, body string) (int, string) {
		t.Helper()
		if body == "" {
			body = `{"publicKey":"` + pub + `"}`
		}
		return post(t, agent.EnrollPath, "Bearer "+token, body)
	}
	t.Run("enroll: a join token used already", func(t *testing.T) {
		if code, msg := enroll(t, b.joinToken, ""); code != 410 || !strings.Contains(msg, "already used") {
			t.Errorf("%d %q; want 410 saying it was used", code, msg)
		}
	})
	t.Run("enroll: a join token never issued", func(t *testing.T) {
		if code, msg := enroll(t, "tjt_"+strings.Repeat("A", 43), ""); code != 401 || !strings.Contains(msg, "not valid") {
			t.Errorf("%d %q; want 401", code, msg)
		}
	})
	t.Run("enroll: an expired join token", func(t *testing.T) {
		out, err := e.TetherCmd(ctx, "cluster", "create", "-g", e.Group, "-n", "hostile-tunnel-expired", "-o", "json").Output()
		if err != nil {
			t.Fatalf("register: %v", testenv.ExitDetail(err))
		}
		t.Cleanup(func() {
			e.TetherCmd(context.Background(), "cluster", "delete", "-g", e.Group, "-n", "hostile-tunnel-expired", "--yes").Run()
		})
		var created struct{ Join struct{ JoinToken string } }
		json.Unmarshal(out, &created)
		expireJoinToken(t, e, created.Join.JoinToken)
		if code, msg := enroll(t, created.Join.JoinToken, ""); code != 410 || !strings.Contains(msg, "expired") {
			t.Errorf("%d %q; want 410 saying it expired", code, msg)
		}
	})
	t.Run("enroll: a public key that is not one", func(t *testing.T) {
		if code, msg := enroll(t, "tjt_"+strings.Repeat("B", 43), `{"publicKey":"AAAA"}`); code != 400 || !strings.Contains(msg, "Ed25519") {
			t.Errorf("%d %q; want 400 describing the key", code, msg)
		}
	})

	t.Run("a deleted cluster's agent is refused and stops", func(t *testing.T) {
		c := startCluster(t, ctx, e, "hostile-tunnel-revoked")
		ckey, cid := agentState(t, c.stateDir)
		if out, err := e.TetherCmd(ctx, "cluster", "delete", "-g", e.Group, "-n", c.name, "--yes").CombinedOutput(); err != nil {
			t.Fatalf("delete: %v\n%s", err, out)
		}
		select {
		case <-c.agent.Done():
		case <-time.After(60 * time.Second):
			t.Fatalf("the agent of the deleted cluster still runs 60 s later:\n%s", c.agent.Tail(20))
		}
		if tail := c.agent.Tail(5); c.agent.Err() == nil || !strings.Contains(tail, "not registered on this hub") {
			t.Errorf("agent exit %v, last lines:\n%s\nwant a failure saying the cluster is not registered", c.agent.Err(), tail)
		}
		p, err := agentkey.Sign(ckey, cid, e.HubAddr, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if code, msg := dial(t, p); code != 404 || !strings.Contains(msg, "not registered") {
			t.Errorf("its key afterwards: %d %q; want 404", code, msg)
		}
	})
}

// agentState reads an agent's key and cluster ID from its state directory.
func agentState(t *testing.T, dir string) (ed25519.PrivateKey, string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, agent.StateKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := agentkey.UnmarshalPrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	var st agent.EnrollResponse
	b, err = os.ReadFile(filepath.Join(dir, agent.StateHubFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil || st.Cluster == "" {
		t.Fatalf("%s: %s (%v)", agent.StateHubFile, b, err)
	}
	return key, st.Cluster
}

// expireJoinToken moves a join token's expiry into the past in the hub's
// store (SQLite, in its data directory): the hub has no setting that would
// make one expire within a test.
func expireJoinToken(t *testing.T, e *testenv.Env, token string) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.HubDataDir(), "tether.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sum := sha256.Sum256([]byte(token))
	res, err := db.Exec(`UPDATE join_tokens SET expires_at = ? WHERE hash = ?`, time.Now().Add(-time.Minute).UnixMicro(), sum[:])
	if err != nil {
		t.Fatalf("expire the join token: %v", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("expire the join token: %d rows", n)
	}
}

// TestHostileLocalProxy attacks a real `tether proxy`: callers without its
// token or with the real credential instead, browser pages of other sites,
// DNS-rebinding host names, plain HTTP and a peer that is not on this
// machine. Each is refused with a message; nothing reaches the API server.
func TestHostileLocalProxy(t *testing.T) {
	e := getEnv(t)
	leakCheck(t, e)
	hc := hubClient(t, e)
	audit := newAPIAudit(t, e)
	lp := startProxy(t, e, e.SAToken)
	cfg, err := clientcmd.LoadFromFile(lp.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kctx := cfg.Contexts[cfg.CurrentContext]
	server, token := cfg.Clusters[kctx.Cluster].Server, cfg.AuthInfos[kctx.AuthInfo].Token
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cfg.Clusters[kctx.Cluster].CertificateAuthorityData)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	tests := []struct {
		name   string
		host   string
		header http.Header
		code   int
		want   string
	}{
		{name: "control: the kubeconfig's token", header: http.Header{"Authorization": {"Bearer " + token}}, code: 200, want: `"kind":"PodList"`},
		{name: "no token", header: http.Header{}, code: 401, want: "needs the token from the kubeconfig"},
		{name: "a wrong token", header: http.Header{"Authorization": {"Bearer " + token[:len(token)-2] + "xx"}}, code: 401, want: "needs the token from the kubeconfig"},
		{name: "the real service-account token instead", header: http.Header{"Authorization": {"Bearer " + e.SAToken}}, code: 401, want: "needs the token from the kubeconfig"},
		{name: "DNS rebinding: a foreign host name", host: "evil.example", header: http.Header{"Authorization": {"Bearer " + token}}, code: 403, want: "not a loopback name"},
		{name: "DNS rebinding: a name resolving to 127.0.0.1", host: "127.0.0.1.nip.io", header: http.Header{"Authorization": {"Bearer " + token}}, code: 403, want: "not a loopback name"},
		{name: "a page of another site", header: http.Header{"Authorization": {"Bearer " + token}, "Origin": {"https://evil.example"}}, code: 403, want: "web pages of other sites"},
		{name: "a sandboxed page", header: http.Header{"Origin": {"null"}}, code: 403, want: "web pages of other sites"},
	}
	var refused []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMarker("lp")
			req, _ := http.NewRequest(http.MethodGet, server+"/api/v1/namespaces/default/pods?limit=1&"+m+"=1", nil)
			req.Header = tt.header.Clone()
			req.Header.Set("User-Agent", m)
			if tt.host != "" {
				req.Host = tt.host
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || !strings.Contains(string(body), tt.want) {
				t.Fatalf("status %d %.300s; want %d with %q", resp.StatusCode, body, tt.code, tt.want)
			}
			if tt.code == 200 {
				if ev := audit.completed(t, m); ev.User.Username != saUser {
					t.Errorf("the control reached the API server as %s, want %s", ev.User.Username, saUser)
				}
				return
			}
			if statusMessage(string(body)) == "" {
				t.Errorf("the refusal is not a Status: %s", body)
			}
			refused = append(refused, m)
		})
	}
	addr := strings.TrimPrefix(server, "https://")
	_, port, _ := net.SplitHostPort(addr)
	t.Run("plain HTTP to its TLS port", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		m := newMarker("lp-plain")
		refused = append(refused, m)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET /api/v1/namespaces/default/pods?%s=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n\r\n", m, token)
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.0 400") || !strings.Contains(string(b), "HTTP request to an HTTPS server") {
			t.Errorf("answer %q; want a 400 saying it speaks HTTPS", b)
		}
	})
	t.Run("a peer that is not on this machine cannot connect", func(t *testing.T) {
		// The host's address on the cluster's link: a peer there reaches
		// this machine, but the proxy listens on 127.0.0.1 only.
		c, err := net.DialTimeout("tcp", net.JoinHostPort(e.NS.HostIP().String(), port), 5*time.Second)
		if err == nil {
			c.Close()
			t.Fatalf("connected to the proxy's port %s from a non-loopback address", port)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial: %v; want connection refused", err)
		}
	})
	t.Run("nothing refused reached the API server", func(t *testing.T) { audit.noneReached(t, e, hc, refused...) })
}

// TestHostileSecrets puts canaries where secrets go: a bearer token at the
// gateway and through tether proxy, a join token at enrollment and in a
// real agent, a client secret at the embedded issuer, an admin token at the
// admin API, a user's password. None may show in a log (the hub's, the
// agents', the forward proxy's, tether proxy's, the API server's audit
// log), in an answer to the client or on the agent's /metrics. The hub and
// the agent log at their default level (neither has a verbosity setting).
func TestHostileSecrets(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	leakCheck(t, e)
	hc := hubClient(t, e)
	canary := func(kind string) string { return fmt.Sprintf("tethercanary%s%016x", kind, rand.Uint64()) }
	bearer, join, secret, admin, password := canary("bearer"), "tjt_"+canary("join"), canary("secret"), canary("admin"), canary("password")
	canaries := []string{bearer, join, secret, admin, password}
	dir := t.TempDir()
	var said []string // everything answered to a client
	request := func(method, u, authorization string) (int, string) {
		req, _ := http.NewRequest(method, u, strings.NewReader(`{"publicKey":"`+base64.StdEncoding.EncodeToString(make([]byte, 32))+`"}`))
		req.Header.Set("Authorization", authorization)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		said = append(said, fmt.Sprint(resp.Header), string(b))
		return resp.StatusCode, string(b)
	}

	if code, body := request(http.MethodGet, gatewayURL(e)+"/api/v1/namespaces/default/pods", "Bearer "+bearer); code != 401 {
		t.Errorf("gateway with the canary bearer token: %d %s; want the API server's 401", code, body)
	}
	if code, body := request(http.MethodPost, e.HubURL+agent.EnrollPath, "Bearer "+join); code != 401 {
		t.Errorf("enroll with the canary join token: %d %s; want 401", code, body)
	}
	if code, body := request(http.MethodGet, e.HubURL+"/api/v1/clusters", "Bearer "+admin); code != 401 {
		t.Errorf("admin API with the canary token: %d %s; want 401", code, body)
	}

	// tether proxy with the canary as its --token, and kubectl through it.
	proxyLog := filepath.Join(dir, "proxy.log")
	kc := filepath.Join(dir, "kubeconfig")
	proxy := exec.Command(e.Tether, "proxy", "-g", e.Group, "-n", e.Name, "--port", "0", "--token", bearer)
	proxy.Env = append(os.Environ(), "TETHER_HUB="+e.HubURL, "TETHER_HUB_CA="+e.HubCA, "KUBECONFIG="+kc)
	p, err := rig.StartProcess("proxy", proxyLog, proxy)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(syscall.SIGINT, 15*time.Second) })
	waitLogLine(t, p, "ready:")
	out, err := testenv.Kubectl(ctx, kc, "get", "pods").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Unauthorized") && !strings.Contains(string(out), "logged in") {
		t.Errorf("kubectl with the canary token: err=%v\n%s\nwant the API server's 401", err, out)
	}
	said = append(said, string(out))

	// A real agent with the canary as its join token: refused, it stops.
	stray := startAgentProcess(t, e, "hostile-canary-agent", join)
	select {
	case <-stray.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("the agent with a made-up join token still runs:\n%s", stray.Tail(20))
	}
	if !strings.Contains(stray.Tail(5), "join token is not valid") {
		t.Errorf("the refused agent's last lines:\n%s\nwant the hub's reason", stray.Tail(5))
	}

	// A service principal of the embedded directory, signing in with the
	// canary as its secret; a user whose password is a canary.
	var sp struct{ AppID string }
	out, err = e.TetherCmd(ctx, "ad", "sp", "create", "--display-name", "hostile-canary", "-o", "json").Output()
	if err != nil || json.Unmarshal(out, &sp) != nil || sp.AppID == "" {
		t.Fatalf("ad sp create: %v %s", testenv.ExitDetail(err), out)
	}
	secretFile := filepath.Join(dir, "secret")
	os.WriteFile(secretFile, []byte(secret+"\n"), 0o600)
	out, err = e.UserCmd(ctx, t.TempDir(), "login", "--issuer", "embedded", "--service-principal", "-u", sp.AppID, "--password-file", secretFile).CombinedOutput()
	if err == nil {
		t.Errorf("tether login with a wrong client secret succeeded:\n%s", out)
	}
	said = append(said, string(out))
	pwFile := filepath.Join(dir, "password")
	os.WriteFile(pwFile, []byte(password+"\n"), 0o600)
	out, err = e.TetherCmd(ctx, "ad", "user", "create", "--display-name", "Canary", "--user-principal-name", newMarker("canary")+"@example.com", "--password-file", pwFile).CombinedOutput()
	if err != nil {
		t.Errorf("ad user create: %v\n%s", err, out)
	}
	said = append(said, string(out))

	metrics, err := agentMetrics(e)
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(e.Dir, "*.log"))
	logs = append(logs, proxyLog, e.Cluster.AuditLog)
	for _, c := range canaries {
		for _, l := range logs {
			b, err := os.ReadFile(l)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(b, []byte(c)) {
				t.Errorf("%s holds a secret (%s)", l, c[:20])
			}
		}
		if strings.Contains(metrics, c) {
			t.Errorf("the agent's /metrics holds a secret (%s)", c[:20])
		}
		for _, s := range said {
			if strings.Contains(s, c) {
				t.Errorf("an answer to the client repeats a secret (%s): %.300s", c[:20], s)
			}
		}
	}
	if b, _ := os.ReadFile(kc); bytes.Contains(b, []byte(bearer)) {
		t.Errorf("the kubeconfig tether proxy wrote holds its --token")
	}
}

// waitLogLine waits up to 30 s for a line starting with prefix in p's log.
func waitLogLine(t *testing.T, p *rig.Process, prefix string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for line := range strings.Lines(p.Tail(50)) {
			if strings.HasPrefix(line, prefix) {
				return
			}
		}
		select {
		case <-p.Done():
			t.Fatalf("%s exited: %v\n%s", p.Name, p.Err(), p.Tail(20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s printed no %q within 30 s:\n%s", p.Name, prefix, p.Tail(20))
		}
		time.Sleep(50 * time.Millisecond) // polling another process's log
	}
}

// TestHostileFileModes runs the CLI under umask 000, which would leave new
// files readable by anyone unless the CLI sets their modes itself: every
// file it writes (the kubeconfig of tether proxy and get-credentials, the
// token cache, the agent's state) must be 0600 in 0700 directories it made,
// with no temporary files left behind.
func TestHostileFileModes(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	umask := []string{"sh", "-c", `umask 000; exec "$0" "$@"`}
	// userCmd is tether run as a user with home, under umask 000.
	userCmd := func(home string, args ...string) *exec.Cmd {
		cmd := e.UserCmd(ctx, home, args...)
		sh, err := exec.LookPath("sh")
		if err != nil {
			t.Fatal(err)
		}
		cmd.Path, cmd.Args = sh, append(append(slices.Clone(umask), e.Tether), args...)
		return cmd
	}
	// private checks that dir and the directories up to stop are 0700 and
	// that dir holds exactly names (glob patterns), each 0600.
	private := func(t *testing.T, stop, dir string, names ...string) {
		t.Helper()
		for d := dir; d != stop && len(d) > len(stop); d = filepath.Dir(d) {
			if info, err := os.Stat(d); err != nil || info.Mode().Perm() != 0o700 {
				t.Errorf("directory %s: %v, want mode 0700", d, modeOf(info, err))
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, ent := range entries {
			if !slices.ContainsFunc(names, func(p string) bool { ok, _ := filepath.Match(p, ent.Name()); return ok }) {
				t.Errorf("%s: unexpected %s (a temporary file left behind?)", dir, ent.Name())
				continue
			}
			info, err := ent.Info()
			if err != nil || info.Mode().Perm() != 0o600 || !info.Mode().IsRegular() {
				t.Errorf("%s: %v, want a file of mode 0600", filepath.Join(dir, ent.Name()), modeOf(info, err))
			}
		}
		if len(entries) == 0 {
			t.Errorf("%s is empty; want %v", dir, names)
		}
	}

	t.Run("tether proxy writes ~/.kube/config", func(t *testing.T) {
		home := t.TempDir()
		cmd := userCmd(home, "proxy", "-g", e.Group, "-n", e.Name, "--port", "0", "--token", e.SAToken)
		p, err := rig.StartProcess("proxy", filepath.Join(t.TempDir(), "proxy.log"), cmd)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Stop(syscall.SIGINT, 15*time.Second)
		waitLogLine(t, p, "ready:")
		private(t, home, filepath.Join(home, ".kube"), "config")
	})
	home := t.TempDir()
	t.Run("tether login fills the token cache", func(t *testing.T) {
		secretFile := filepath.Join(t.TempDir(), "secret")
		os.WriteFile(secretFile, []byte(ciBot.Secret+"\n"), 0o600)
		if out, err := userCmd(home, "login", "--service-principal", "-u", ciBot.ID, "--password-file", secretFile).CombinedOutput(); err != nil {
			t.Fatalf("login: %v\n%s", err, out)
		}
		private(t, home, filepath.Join(home, ".kube", "cache", "tether"), "*.json", "*.lock")
	})
	t.Run("get-credentials writes a kubeconfig in a new directory", func(t *testing.T) {
		kc := filepath.Join(home, "new", "dir", "kubeconfig")
		if out, err := userCmd(home, "get-credentials", "-g", e.Group, "-n", e.Name, "-u", ciBot.ID, "-f", kc).CombinedOutput(); err != nil {
			t.Fatalf("get-credentials: %v\n%s", err, out)
		}
		private(t, home, filepath.Dir(kc), "kubeconfig")
	})
	t.Run("the agent's state directory", func(t *testing.T) {
		c := startCluster(t, ctx, e, "hostile-umask", umask...)
		private(t, e.Dir, c.stateDir, agent.StateKeyFile, agent.StateHubFile)
	})
}

func modeOf(info fs.FileInfo, err error) any {
	if err != nil {
		return err
	}
	return info.Mode()
}
