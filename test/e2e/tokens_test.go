package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/test/oidcprovider"
	"tether.dev/tether/test/testenv"
)

// embeddedIssuer is what a test needs to mint tokens as the hub's own
// issuer would: its URL and its signing key, read from the hub's data
// directory (the attacker of these tests holds a copy of nothing else).
type embeddedIssuer struct {
	url string
	key *ecdsa.PrivateKey
	kid string
}

func loadEmbeddedIssuer(t *testing.T, e *testenv.Env, hc *http.Client) embeddedIssuer {
	t.Helper()
	var ac struct {
		Issuers []struct {
			Issuer   string
			Embedded bool
		}
	}
	getJSONT(t, hc, e.HubURL+"/api/v1/auth/config", &ac)
	var iss embeddedIssuer
	for _, i := range ac.Issuers {
		if i.Embedded {
			iss.url = i.Issuer
		}
	}
	if iss.url == "" {
		t.Fatalf("the hub's auth config lists no embedded issuer: %+v", ac)
	}
	b, err := os.ReadFile(filepath.Join(e.HubDataDir(), "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("issuer.key holds no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	iss.key = k.(*ecdsa.PrivateKey)
	var disc struct {
		JWKSURI string `json:"jwks_uri"`
	}
	getJSONT(t, hc, iss.url+"/.well-known/openid-configuration", &disc)
	var set jose.JSONWebKeySet
	getJSONT(t, hc, disc.JWKSURI, &set)
	if len(set.Keys) != 1 {
		t.Fatalf("the embedded issuer publishes %d keys, want 1", len(set.Keys))
	}
	iss.kid = set.Keys[0].KeyID
	return iss
}

func getJSONT(t *testing.T, hc *http.Client, u string, out any) {
	t.Helper()
	resp, err := hc.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
}

// sign makes a compact JWS of claims with key (ES256).
func signES256(t *testing.T, key *ecdsa.PrivateKey, kid string, claims map[string]any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// handMade builds a JWS by hand: a header and claims, and a signature
// made by sig over the signing input (nil: no signature).
func handMade(header, claims map[string]any, sig func(input []byte) []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(c)
	var s []byte
	if sig != nil {
		s = sig([]byte(input))
	}
	return input + "." + enc.EncodeToString(s)
}

// TestHostileTokens sends the gateway tokens an attacker would try. Each is
// refused before anything reaches the cluster (a 401 Status from the hub
// naming the reason); two controls show a correct token of the same shape
// passes.
func TestHostileTokens(t *testing.T) {
	e := getEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hc := hubClient(t, e)
	iss := loadEmbeddedIssuer(t, e, hc)

	// A real user of the embedded directory with Cluster User and a
	// binding to view: the controls must pass.
	out, err := e.TetherCmd(ctx, "ad", "user", "create", "--display-name", "Hostile Test", "--user-principal-name", "hostile-test@example.com", "-o", "json").Output()
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
	if out, err := e.Cluster.Kubectl(ctx, "create", "clusterrolebinding", "hostile-test-view", "--clusterrole", "view", "--user", u.ID).CombinedOutput(); err != nil {
		t.Fatalf("bind view: %v\n%s", err, out)
	}

	now := time.Now()
	claims := func(change ...any) map[string]any {
		c := map[string]any{
			"iss": iss.url, "sub": u.ID, "oid": u.ID, "aud": "tether", "azp": "tether-cli", "idtyp": "user",
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "name": "Hostile Test",
		}
		for i := 0; i < len(change); i += 2 {
			if change[i+1] == nil {
				delete(c, change[i].(string))
			} else {
				c[change[i].(string)] = change[i+1]
			}
		}
		return c
	}
	mint := func(change ...any) string { return signES256(t, iss.key, iss.kid, claims(change...)) }
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubDER, _ := x509.MarshalPKIXPublicKey(iss.key.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	mallorys, err := sharedIdP.UserToken(ctx, mallory.Username, mallory.Password, oidcprovider.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	otherTenant, err := otherTenantIdP.UserToken(ctx, alice.Username, alice.Password, oidcprovider.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name   string
		token  string
		status int
		want   string // in the answer's message
	}{
		{"control: a correct token", mint(), http.StatusOK, `"kind":"PodList"`},
		{"control: expired 30 s ago, inside the 60 s leeway", mint("exp", now.Add(-30*time.Second).Unix()), http.StatusOK, `"kind":"PodList"`},
		{"wrong issuer: the hub's issuer named, another key signed", signES256(t, attacker, iss.kid, claims()), http.StatusUnauthorized, "bad signature"},
		{"wrong issuer: the hub's key, the external issuer named", mint("iss", sharedIdP.Issuer), http.StatusUnauthorized, "bad signature"},
		{"wrong audience", mint("aud", "api://someone-else"), http.StatusUnauthorized, "wrong audience"},
		{"several audiences, azp not the hub's", mint("aud", []string{"tether", "other"}, "azp", "other"), http.StatusUnauthorized, "wrong audience"},
		{"expired 2 minutes ago", mint("exp", now.Add(-2*time.Minute).Unix()), http.StatusUnauthorized, "token expired"},
		{"not valid for 2 more minutes", mint("nbf", now.Add(2*time.Minute).Unix()), http.StatusUnauthorized, "not yet valid"},
		{"no exp", mint("exp", nil), http.StatusUnauthorized, "no exp"},
		{"alg none", handMade(map[string]any{"alg": "none", "typ": "JWT"}, claims(), nil), http.StatusUnauthorized, "signing algorithm not allowed"},
		{"HS256 keyed with the hub's public key", handMade(map[string]any{"alg": "HS256", "typ": "JWT", "kid": iss.kid}, claims(), func(in []byte) []byte {
			m := hmac.New(sha256.New, pubPEM)
			m.Write(in)
			return m.Sum(nil)
		}), http.StatusUnauthorized, "signing algorithm not allowed"},
		{"a tenant the hub does not allow", otherTenant.AccessToken, http.StatusUnauthorized, "tenant not allowed"},
		{"a system:masters group claim", mallorys.AccessToken, http.StatusUnauthorized, "system:"},
		{"a system: object ID", mint("oid", "system:admin", "sub", "system:admin"), http.StatusUnauthorized, "system:"},
		{"a principal not in the directory", mint("oid", "6d1c57b4-6f4e-4d51-9c53-4b1b0d9e0a11"), http.StatusUnauthorized, "unknown principal"},
		{"a megabyte of dots", strings.Repeat(".", 1_000_000), http.StatusUnauthorized, "more than any valid token"},
	}
	gateway := e.HubURL + "/k8s/" + e.Group + "/" + e.Name + "/api/v1/namespaces/default/pods"
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := getWithToken(t, hc, gateway, tc.token)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Errorf("status %d, body %.300s\nwant status %d and %q", status, body, tc.status, tc.want)
			}
			if tc.status == http.StatusUnauthorized && (!strings.Contains(body, `"kind":"Status"`) || !strings.Contains(body, "refused")) {
				t.Errorf("the refusal is not the hub's Status: %.300s", body)
			}
		})
	}
	t.Run("a header over a megabyte is cut off by the server", func(t *testing.T) {
		status, _ := getWithToken(t, hc, gateway, strings.Repeat(".", 2<<20))
		if status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", status)
		}
	})
	t.Run("an issuer the hub does not trust is a service-account token: the API server refuses it", func(t *testing.T) {
		status, body := getWithToken(t, hc, gateway, signES256(t, attacker, "k", claims("iss", "https://issuer.invalid")))
		if status != http.StatusUnauthorized || strings.Contains(body, "refused") {
			t.Errorf("status %d, body %.300s; want the API server's own 401", status, body)
		}
	})
	t.Run("a service-account token of another cluster: the API server's own 401 Status reaches the client", func(t *testing.T) {
		// Made as the cluster makes its tokens (issuer, names, claims) but
		// signed by another cluster's key: only the API server can tell.
		audit := newAPIAudit(t, e)
		m := newMarker("foreign-sa")
		tok := signES256(t, attacker, "another-cluster", map[string]any{
			"iss": "https://kubernetes.default.svc.cluster.local", "sub": saUser, "aud": []string{"https://kubernetes.default.svc.cluster.local"},
			"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"kubernetes.io": map[string]any{"namespace": "default", "serviceaccount": map[string]any{"name": "demo-user", "uid": "45695171-65de-4313-979d-761192080ab1"}},
		})
		req, _ := http.NewRequest(http.MethodGet, gateway, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("User-Agent", m)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st struct {
			Kind, Status, Message, Reason string
			Code                          int
		}
		b, _ := io.ReadAll(resp.Body)
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		want := struct {
			Kind, Status, Message, Reason string
			Code                          int
		}{"Status", "Failure", "Unauthorized", "Unauthorized", 401}
		if diff := cmp.Diff(want, st); diff != "" || resp.StatusCode != 401 {
			t.Errorf("status %d, Status (-want +got):\n%s", resp.StatusCode, diff)
		}
		if ev := audit.completed(t, m); ev.ResponseStatus.Code != 401 {
			t.Errorf("the API server answered %d, want its own 401", ev.ResponseStatus.Code)
		}
	})
	t.Run("malformed Authorization headers", func(t *testing.T) {
		audit := newAPIAudit(t, e)
		const hub, apiServer = "hub", "api server"
		tests := []struct {
			name  string
			lines string // the Authorization header lines
			code  int
			want  string
			// who answers: the hub (nothing may reach the API server), or
			// the API server, which must see as whom (empty: it refused the
			// credentials; never anonymous).
			by, user string
		}{
			{"the scheme alone", "Authorization: Bearer", 401, "no credentials", hub, ""},
			{"the scheme and spaces", "Authorization: Bearer    ", 401, "no credentials", hub, ""},
			{"Basic credentials", "Authorization: Basic dXNlcjpwYXNz", 401, "no credentials", hub, ""},
			{"Negotiate", "Authorization: Negotiate YIIBhgYGKwYBBQUCoIIBejCCAXag", 401, "no credentials", hub, ""},
			{"a tab after the scheme", "Authorization: Bearer\t" + e.SAToken, 401, "no credentials", hub, ""},
			{"a hundred kilobytes", "Authorization: Bearer " + strings.Repeat("A", 100<<10), 401, "more than any valid token", hub, ""},
			{"a control character", "Authorization: Bearer abc\x01def", 400, "Bad Request", hub, ""},
			{"a NUL byte", "Authorization: Bearer abc\x00def", 400, "Bad Request", hub, ""},
			{"a lower-case header name and scheme", "authorization: bearer " + e.SAToken, 200, `"kind":"PodList"`, apiServer, saUser},
			// The API server reads "Bearer  TOKEN" as no token at all, an
			// anonymous request, where the hub and the agent read TOKEN.
			{"two spaces before a valid token", "Authorization: Bearer  " + e.SAToken, 200, `"kind":"PodList"`, apiServer, saUser},
			{"two spaces before a made-up token", "Authorization: Bearer  made-up", 401, "Unauthorized", apiServer, ""},
			{"a space inside the token", "Authorization: Bearer made up", 401, "Unauthorized", apiServer, ""},
			{"non-ASCII bytes", "Authorization: Bearer \u00e9\u00e9", 401, "Unauthorized", apiServer, ""},
			{"a made-up token first, the valid one second", "Authorization: Bearer made-up\r\nAuthorization: Bearer " + e.SAToken, 401, "Unauthorized", apiServer, ""},
			{"the valid token first, a made-up one second", "Authorization: Bearer " + e.SAToken + "\r\nAuthorization: Bearer made-up", 200, `"kind":"PodList"`, apiServer, saUser},
		}
		var refused []string
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				m := newMarker("authz")
				raw := fmt.Sprintf("GET /k8s/%s/%s/api/v1/namespaces/default/pods?limit=1&%s=1 HTTP/1.1\r\nHost: %s\r\n%s\r\nUser-Agent: %s\r\nConnection: close\r\n\r\n",
					e.Group, e.Name, m, e.HubAddr, tt.lines, m)
				got := rawExchange(t, e, raw)
				if len(got) != 1 || got[0].code != tt.code || !strings.Contains(got[0].body, tt.want) {
					t.Fatalf("answers %+v; want one %d with %q", got, tt.code, tt.want)
				}
				if tt.by == hub {
					refused = append(refused, m)
					return
				}
				ev := audit.completed(t, m)
				if ev.User.Username != tt.user || ev.ImpersonatedUser != nil {
					t.Errorf("the API server saw user %q (impersonating %+v); want %q", ev.User.Username, ev.ImpersonatedUser, tt.user)
				}
			})
		}
		audit.noneReached(t, e, hc, refused...)
	})
}

func hubClient(t *testing.T, e *testenv.Env) *http.Client {
	t.Helper()
	b, err := os.ReadFile(e.HubCA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func getWithToken(t *testing.T, hc *http.Client, u, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}
