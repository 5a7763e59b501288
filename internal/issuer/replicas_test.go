package issuer

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"
)

// replica returns another replica of e's hub, as behind a load balancer:
// an issuer with e's configuration (its URL, key, store and clock) on a
// server of its own. Its url is where that replica is reached; the tokens
// it issues name e.url as their issuer, so verify them with e.
func (e *env) replica(t *testing.T) *env {
	t.Helper()
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	r := *e
	r.srv, r.url = srv, srv.URL+"/oidc"
	r.roots = e.roots.Clone()
	r.roots.AddCert(srv.Certificate())
	var err error
	if r.iss, err = New(e.iss.cfg, slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))); err != nil {
		t.Fatal(err)
	}
	mux.Handle("/oidc/", r.iss)
	return &r
}

// newReplicas returns three replicas of one hub on one store.
func newReplicas(t *testing.T) (a, b, c *env) {
	t.Helper()
	a = newEnv(t, nil)
	return a, a.replica(t), a.replica(t)
}

// TestReplicasDeviceCode runs device code sign-ins whose steps reach
// different replicas: started on A, approved or denied on B's page,
// polled on any.
func TestReplicasDeviceCode(t *testing.T) {
	a, b, c := newReplicas(t)
	approved, denied := a.deviceAuth(t), a.deviceAuth(t)
	// Steps run in order, on one clock.
	steps := []struct {
		name    string
		advance time.Duration
		act     func(t *testing.T) // before polling; nil: none
		poll    *env
		device  deviceAuthResponse
		want    oauthErr
	}{
		{"pending on C", 0, nil, c, approved, oauthErr{400, "authorization_pending"}},
		{"at once on A", 0, nil, a, approved, oauthErr{400, "slow_down"}},
		{"interval grown, on B", 10 * time.Second, nil, b, approved, oauthErr{400, "authorization_pending"}},
		{"approved on B's page, polled on C", 10 * time.Second, func(t *testing.T) { b.approve(t, approved.UserCode) }, c, approved, oauthErr{200, ""}},
		{"redeemed, on A", 10 * time.Second, nil, a, approved, oauthErr{400, "invalid_grant"}},
		{"redeemed, on C", 10 * time.Second, nil, c, approved, oauthErr{400, "invalid_grant"}},
		{"denied on C's page, polled on B", 0, func(t *testing.T) { c.deny(t, denied.UserCode) }, b, denied, oauthErr{400, "access_denied"}},
		{"denial told once, on A", 10 * time.Second, nil, a, denied, oauthErr{400, "invalid_grant"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a.clock.Advance(s.advance)
			if s.act != nil {
				s.act(t)
			}
			r := s.poll.pollDevice(t, s.device.DeviceCode)
			if diff := cmp.Diff(s.want, r.oauth()); diff != "" {
				t.Fatalf("(-want +got):\n%s\n%s", diff, r.body)
			}
			if r.status != http.StatusOK {
				return
			}
			tok := decodeOK[tokenResponse](t, r)
			if claims, _ := a.verify(t, tok.AccessToken, audience); claims["sub"] != aliceID {
				t.Errorf("the token's subject is %v, want %s", claims["sub"], aliceID)
			}
		})
	}
}

// TestReplicasAuthCode redeems authorization codes on other replicas than
// the one that issued them.
func TestReplicasAuthCode(t *testing.T) {
	a, b, c := newReplicas(t)
	verifier := oauth2.GenerateVerifier()
	first := a.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
	second := b.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
	steps := []struct {
		name     string
		on       *env
		code     string
		verifier string
		want     oauthErr
	}{
		{"issued by A, redeemed on B", b, first, verifier, oauthErr{200, ""}},
		{"again on C", c, first, verifier, oauthErr{400, "invalid_grant"}},
		{"again on A", a, first, verifier, oauthErr{400, "invalid_grant"}},
		{"issued by B, wrong verifier on C", c, second, oauth2.GenerateVerifier(), oauthErr{400, "invalid_grant"}},
		{"then the right one on A", a, second, verifier, oauthErr{400, "invalid_grant"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if diff := cmp.Diff(s.want, s.on.redeem(t, s.code, s.verifier, testRedirect).oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestReplicasLockout checks that failures counted on some replicas lock
// the login name, and the client address, out on the others.
func TestReplicasLockout(t *testing.T) {
	a, b, c := newReplicas(t)
	replicas := []*env{a, b, c}
	da := a.deviceAuth(t)
	for n := range loginFreeFailures {
		if r := replicas[n%3].submitDevice(t, da.UserCode, aliceLogin, "wrong password!", "approve"); r.status != http.StatusForbidden {
			t.Fatalf("failure %d: %d", n+1, r.status)
		}
	}
	steps := []struct {
		name    string
		on      *env
		advance time.Duration
		login   string
		pw      string
		want    int
	}{
		{"locked on B", b, 0, aliceLogin, alicePW, 429},
		{"locked on C, other case", c, 0, "ALICE@example.com", alicePW, 429},
		{"after 1 s, a failure on A", a, time.Second, aliceLogin, "wrong password!", 403},
		{"locked for 2 s on C", c, time.Second, aliceLogin, alicePW, 429},
		{"after 2 s on B", b, time.Second, aliceLogin, alicePW, 200},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			a.clock.Advance(s.advance)
			if got := s.on.submitDevice(t, da.UserCode, s.login, s.pw, "approve").status; got != s.want {
				t.Errorf("status %d, want %d", got, s.want)
			}
		})
	}

	t.Run("user code guesses", func(t *testing.T) {
		da := a.deviceAuth(t)
		for n := range guessFreeFailures {
			if r := replicas[n%3].submitDevice(t, "BCDF-GHJK", aliceLogin, alicePW, "approve"); r.status != http.StatusBadRequest {
				t.Fatalf("guess %d: %d", n+1, r.status)
			}
		}
		for _, on := range replicas {
			if r := on.submitDevice(t, da.UserCode, aliceLogin, alicePW, "approve"); r.status != http.StatusTooManyRequests {
				t.Errorf("after %d wrong codes: %d", guessFreeFailures, r.status)
			}
		}
	})
}

// TestReplicasConcurrentRedemption redeems each code from two replicas at
// once: exactly one gets the tokens, the other invalid_grant.
func TestReplicasConcurrentRedemption(t *testing.T) {
	a, b, c := newReplicas(t)
	verifier := oauth2.GenerateVerifier()
	const rounds = 4
	for n := range rounds {
		t.Run(fmt.Sprint("authorization code ", n+1), func(t *testing.T) {
			code := c.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
			form := url.Values{"grant_type": {"authorization_code"}, "client_id": {cliID}, "code": {code},
				"code_verifier": {verifier}, "redirect_uri": {testRedirect}}
			checkOneWins(t, []*env{a, b}, form)
		})
		t.Run(fmt.Sprint("device code ", n+1), func(t *testing.T) {
			da := c.deviceAuth(t)
			c.approve(t, da.UserCode)
			form := url.Values{"grant_type": {grantDeviceCode}, "client_id": {cliID}, "device_code": {da.DeviceCode}}
			checkOneWins(t, []*env{a, b}, form)
		})
	}
}

// checkOneWins posts form to the token endpoint of each replica at once,
// and checks that exactly one succeeds and the others get invalid_grant.
func checkOneWins(t *testing.T, replicas []*env, form url.Values) {
	t.Helper()
	start := make(chan struct{})
	type result struct {
		r   response
		err error
	}
	results := make(chan result, len(replicas)) // each replica's request sends one
	var wg sync.WaitGroup
	for _, e := range replicas {
		wg.Go(func() {
			<-start
			r, err := e.postForm(t.Context(), tokenPath, form)
			results <- result{r, err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	got := map[oauthErr]int{}
	for res := range results {
		if res.err != nil {
			t.Fatal(res.err)
		}
		got[res.r.oauth()]++
	}
	want := map[oauthErr]int{{200, ""}: 1, {400, "invalid_grant"}: len(replicas) - 1}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
}
