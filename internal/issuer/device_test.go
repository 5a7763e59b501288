package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"tether.dev/tether/internal/credentials"
)

func TestDeviceCodeEndToEnd(t *testing.T) {
	// The CLI polls every whole second: advertise 1 s, enforce less, so
	// that no poll of the test is answered slow_down.
	e := newEnv(t, func(c *Config) { c.DevicePollInterval = 200 * time.Millisecond })
	ctx := testContext(t)
	prompt := newPromptWriter()
	src, err := credentials.New(credentials.Config{
		Issuer: e.url, ClientID: cliID, Audience: audience, Cache: newCache(t), HTTPClient: e.httpClient(false),
		Interactive: true, Prompt: prompt,
	})
	if err != nil {
		t.Fatal(err)
	}

	browserDone := make(chan error, 1)
	userCtx, stopUser := context.WithCancel(ctx)
	defer stopUser()
	go func() { // the person at the browser
		var out string
		select {
		case out = <-prompt.first:
		case <-userCtx.Done():
			browserDone <- userCtx.Err()
			return
		}
		m := devicePrompt.FindStringSubmatch(out)
		if m == nil {
			browserDone <- errors.New("prompt without URI and code: " + out)
			return
		}
		browserDone <- e.deviceBrowser(userCtx, m[1], m[2])
	}()
	tok, err := src.Get(ctx)
	if err != nil {
		stopUser() // the prompt may never come
	}
	if berr := <-browserDone; berr != nil && err == nil {
		t.Fatalf("browser: %v", berr)
	}
	if err != nil {
		t.Fatal(err)
	}

	now := e.clock.Now()
	at, ath := e.verify(t, tok.AccessToken, audience)
	idt, _ := e.verify(t, tok.IDToken, cliID)
	got := map[string]any{"access": stable(t, at, now, time.Hour), "typ": ath["typ"], "id aud": idt["aud"], "id sub": idt["sub"],
		"refresh typ": jwsHeader(t, tok.RefreshToken)["typ"]}
	want := map[string]any{
		"access": map[string]any{"iss": e.url, "sub": aliceID, "oid": aliceID, "aud": audience, "azp": cliID, "name": "Alice Liddell",
			"preferred_username": aliceLogin, "idtyp": "user", "scp": "openid profile"},
		"typ": "at+jwt", "id aud": cliID, "id sub": aliceID, "refresh typ": "tether-refresh+jwt",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tokens (-want +got):\n%s", diff)
	}
}

// deviceBrowser is a person who opens the verification URI, sees the
// form with the code filled in from the complete URI, types the login
// name and password, and submits.
func (e *env) deviceBrowser(ctx context.Context, verificationURI, userCode string) error {
	client := e.httpClient(false)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, verificationURI+"?"+url.Values{"user_code": {userCode}}.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	page, err := readResponse(resp)
	if err != nil {
		return err
	}
	if !strings.Contains(page.body, `value="`+userCode+`"`) {
		return errors.New("the device page does not show the code: " + page.body)
	}
	form := url.Values{"user_code": {userCode}, "login": {aliceLogin}, "password": {alicePW}, "action": {"approve"}}
	req, _ = http.NewRequestWithContext(ctx, http.MethodPost, verificationURI, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = client.Do(req)
	if err != nil {
		return err
	}
	if page, err = readResponse(resp); err != nil {
		return err
	}
	if page.status != http.StatusOK || !strings.Contains(page.body, "Signed in as Alice Liddell") {
		return fmt.Errorf("sign-in page: %d: %s", page.status, page.body)
	}
	return nil
}

var userCodePattern = regexp.MustCompile(`^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$`)

func TestDeviceAuthorization(t *testing.T) {
	e := newEnv(t, nil)
	da := e.deviceAuth(t)
	got := map[string]any{"user code": userCodePattern.MatchString(da.UserCode), "device code": len(da.DeviceCode),
		"uri": da.VerificationURI, "complete": da.VerificationURIComplete, "expires": da.ExpiresIn, "interval": da.Interval}
	want := map[string]any{"user code": true, "device code": 43, "uri": e.url + "/device",
		"complete": e.url + "/device?user_code=" + da.UserCode, "expires": int64(900), "interval": int64(5)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("device authorization (-want +got):\n%s", diff)
	}

	tests := []struct {
		name string
		form url.Values
		want oauthErr
	}{
		{"no scope", url.Values{"client_id": {cliID}}, oauthErr{200, ""}},
		{"unknown client", url.Values{"client_id": {spClientID}}, oauthErr{401, "invalid_client"}},
		{"no client", url.Values{"scope": {"openid"}}, oauthErr{400, "invalid_request"}},
		{"with a secret", url.Values{"client_id": {cliID}, "client_secret": {"s"}}, oauthErr{401, "invalid_client"}},
		{"unknown scope", url.Values{"client_id": {cliID}, "scope": {"openid Directory.ReadWrite.All"}}, oauthErr{400, "invalid_scope"}},
		{"other resource", url.Values{"client_id": {cliID}, "resource": {"https://management.example"}}, oauthErr{400, "invalid_target"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, e.post(t, deviceCodePath, tt.form).oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeviceCodePolling(t *testing.T) {
	e := newEnv(t, nil) // polls at least 5 s apart
	approved, denied, expiring := e.deviceAuth(t), e.deviceAuth(t), e.deviceAuth(t)
	// Steps run in order, on one clock.
	steps := []struct {
		name    string
		advance time.Duration
		act     func(t *testing.T) // before polling; nil: none
		device  deviceAuthResponse
		want    oauthErr
	}{
		{"first poll", 0, nil, approved, oauthErr{400, "authorization_pending"}},
		{"at once again", 0, nil, approved, oauthErr{400, "slow_down"}},
		{"after the old interval", 5 * time.Second, nil, approved, oauthErr{400, "slow_down"}}, // 10 s now, then 15 s
		{"after the interval grown twice", 15 * time.Second, nil, approved, oauthErr{400, "authorization_pending"}},
		{"approved", 10 * time.Second, func(t *testing.T) { e.approve(t, approved.UserCode) }, approved, oauthErr{200, ""}},
		{"redeemed once", 10 * time.Second, nil, approved, oauthErr{400, "invalid_grant"}},
		{"denied", 0, func(t *testing.T) { e.deny(t, denied.UserCode) }, denied, oauthErr{400, "access_denied"}},
		{"denied is gone", 10 * time.Second, nil, denied, oauthErr{400, "invalid_grant"}},
		{"expired", DefaultDeviceCodeTTL, nil, expiring, oauthErr{400, "expired_token"}},
		{"unknown", 0, nil, deviceAuthResponse{DeviceCode: "nope"}, oauthErr{400, "invalid_grant"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e.clock.Advance(s.advance)
			if s.act != nil {
				s.act(t)
			}
			if diff := cmp.Diff(s.want, e.pollDevice(t, s.device.DeviceCode).oauth()); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("other client", func(t *testing.T) {
		da := e.deviceAuth(t)
		r := e.post(t, tokenPath, url.Values{"grant_type": {grantDeviceCode}, "client_id": {spClientID}, "device_code": {da.DeviceCode}})
		if diff := cmp.Diff(oauthErr{401, "invalid_client"}, r.oauth()); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

func (e *env) approve(t *testing.T, userCode string) {
	t.Helper()
	if r := e.submitDevice(t, userCode, aliceLogin, alicePW, "approve"); r.status != http.StatusOK {
		t.Fatalf("approve: %d %s", r.status, r.body)
	}
}

func (e *env) deny(t *testing.T, userCode string) {
	t.Helper()
	if r := e.submitDevice(t, userCode, "", "", "deny"); r.status != http.StatusOK || !strings.Contains(r.body, "denied") {
		t.Fatalf("deny: %d %s", r.status, r.body)
	}
}

func TestDevicePage(t *testing.T) {
	e := newEnv(t, nil)
	da := e.deviceAuth(t)
	r := e.get(t, e.url+devicePath+"?user_code="+url.QueryEscape(`"><script>x</script>`))
	headers := map[string]string{}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options", "Cache-Control", "Referrer-Policy", "Content-Type"} {
		headers[h] = r.header.Get(h)
	}
	wantHeaders := map[string]string{
		"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
		"X-Frame-Options":         "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
		"Content-Type": "text/html; charset=utf-8",
	}
	if diff := cmp.Diff(wantHeaders, headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if strings.Contains(r.body, "<script>") {
		t.Errorf("the user code is not escaped:\n%s", r.body)
	}
	if f := parseForm(t, e.get(t, da.VerificationURIComplete).body); f.fields.Get("user_code") != da.UserCode || f.action != "/oidc/device" {
		t.Errorf("the complete URI's form: %+v", f)
	}

	lower := strings.ToLower(strings.ReplaceAll(da.UserCode, "-", " "))
	type outcome struct {
		Status int
		Says   bool
	}
	tests := []struct {
		name                  string
		code, login, pw, says string
		want                  outcome
	}{
		{"wrong code", "BCDF-GHJK", aliceLogin, alicePW, "not valid", outcome{400, true}},
		{"not a code", "12345678", aliceLogin, alicePW, "not valid", outcome{400, true}},
		{"wrong password", da.UserCode, aliceLogin, "wrong password!", "Wrong login name or password", outcome{403, true}},
		{"unknown user", da.UserCode, "carol@example.com", alicePW, "Wrong login name or password", outcome{403, true}},
		{"user without a password", da.UserCode, bobLogin, "anything at all", "Wrong login name or password", outcome{403, true}},
		{"no password", da.UserCode, aliceLogin, "", "Enter your login name and password", outcome{400, true}},
		{"lower case, spaces, login in capitals", lower, "ALICE@example.com", alicePW, "Signed in as Alice Liddell (alice@example.com)", outcome{200, true}},
		{"used code", da.UserCode, aliceLogin, alicePW, "not valid", outcome{400, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.submitDevice(t, tt.code, tt.login, tt.pw, "approve")
			if diff := cmp.Diff(tt.want, outcome{r.status, strings.Contains(r.body, tt.says)}); diff != "" {
				t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
			}
		})
	}
	if r := e.pollDevice(t, da.DeviceCode); r.status != http.StatusOK {
		t.Errorf("poll after approval: %d %s", r.status, r.body)
	}
}

func TestPasswordLockout(t *testing.T) {
	e := newEnv(t, nil)
	da := e.deviceAuth(t)
	try := func(login, pw string) int { return e.submitDevice(t, da.UserCode, login, pw, "approve").status }
	for n := range loginFreeFailures {
		if got := try(aliceLogin, "wrong password!"); got != http.StatusForbidden {
			t.Fatalf("failure %d: %d", n+1, got)
		}
	}
	// Locked out for 1 s, then 2 s: even the right password, under any
	// spelling of the login name, is not checked.
	steps := []struct {
		name    string
		advance time.Duration
		login   string
		pw      string
		want    int
	}{
		{"locked", 0, aliceLogin, alicePW, 429},
		{"other case, locked", 0, "Alice@Example.com", alicePW, 429},
		{"after 1 s", time.Second, aliceLogin, "wrong password!", 403},
		{"locked for 2 s", time.Second, aliceLogin, alicePW, 429},
		{"after 2 s", time.Second, aliceLogin, alicePW, 200},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e.clock.Advance(s.advance)
			if got := try(s.login, s.pw); got != s.want {
				t.Errorf("status %d, want %d", got, s.want)
			}
		})
	}
	// The success reset the count: a failure is free again.
	da = e.deviceAuth(t)
	if got := try(aliceLogin, "wrong password!"); got != http.StatusForbidden {
		t.Errorf("after a success, a failure: %d", got)
	}
	// Other names are not affected.
	r := e.submitDevice(t, da.UserCode, bobLogin, "x", "approve")
	if r.status != http.StatusForbidden || r.header.Get("Retry-After") != "" {
		t.Errorf("bob: %d", r.status)
	}
}

func TestUserCodeGuessing(t *testing.T) {
	e := newEnv(t, nil)
	da := e.deviceAuth(t)
	for n := range guessFreeFailures {
		if r := e.submitDevice(t, "BCDF-GHJK", aliceLogin, alicePW, "approve"); r.status != http.StatusBadRequest {
			t.Fatalf("guess %d: %d", n+1, r.status)
		}
	}
	r := e.submitDevice(t, da.UserCode, aliceLogin, alicePW, "approve")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || !strings.Contains(r.body, "Too many failed attempts with wrong codes") {
		t.Errorf("after %d wrong codes: %d Retry-After %q\n%s", guessFreeFailures, r.status, r.header.Get("Retry-After"), r.body)
	}
	e.clock.Advance(time.Second)
	if r := e.submitDevice(t, da.UserCode, aliceLogin, alicePW, "approve"); r.status != http.StatusOK {
		t.Errorf("after the lock-out: %d %s", r.status, r.body)
	}
}

func TestPendingBound(t *testing.T) {
	e := newEnv(t, nil)
	e.iss.devices.max = 2
	e.deviceAuth(t)
	da := e.deviceAuth(t)
	r := e.post(t, deviceCodePath, url.Values{"client_id": {cliID}})
	if diff := cmp.Diff(oauthErr{503, "temporarily_unavailable"}, r.oauth()); diff != "" || r.header.Get("Retry-After") != "60" {
		t.Errorf("(-want +got):\n%s\nRetry-After %q\n%s", diff, r.header.Get("Retry-After"), r.body)
	}
	// A redeemed code frees its place at once.
	e.approve(t, da.UserCode)
	if r := e.pollDevice(t, da.DeviceCode); r.status != http.StatusOK {
		t.Fatalf("poll: %d %s", r.status, r.body)
	}
	e.deviceAuth(t)
	e.clock.Advance(DefaultDeviceCodeTTL) // the two expire
	e.deviceAuth(t)
	e.deviceAuth(t)
}
