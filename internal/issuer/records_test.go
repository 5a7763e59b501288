package issuer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"tether.dev/tether/internal/store"
)

// failingStore is a store whose calls that sign-ins make fail with err
// while it is set, as a store does whose server is down.
type failingStore struct {
	store.Store

	mu  sync.Mutex
	err error // guarded by mu; nil: calls go through
}

func (s *failingStore) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *failingStore) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *failingStore) PutEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) error {
	if err := s.failure(); err != nil {
		return err
	}
	return s.Store.PutEphemeral(ctx, e, now)
}

func (s *failingStore) GetEphemeral(ctx context.Context, kind, key string, now time.Time) (store.Ephemeral, error) {
	if err := s.failure(); err != nil {
		return store.Ephemeral{}, err
	}
	return s.Store.GetEphemeral(ctx, kind, key, now)
}

func (s *failingStore) UpdateEphemeral(ctx context.Context, e store.Ephemeral, now time.Time) (store.Ephemeral, error) {
	if err := s.failure(); err != nil {
		return store.Ephemeral{}, err
	}
	return s.Store.UpdateEphemeral(ctx, e, now)
}

func (s *failingStore) TakeEphemeral(ctx context.Context, kind, key string, now time.Time) (store.Ephemeral, error) {
	if err := s.failure(); err != nil {
		return store.Ephemeral{}, err
	}
	return s.Store.TakeEphemeral(ctx, kind, key, now)
}

func (s *failingStore) DeleteEphemeral(ctx context.Context, kind, key string) error {
	if err := s.failure(); err != nil {
		return err
	}
	return s.Store.DeleteEphemeral(ctx, kind, key)
}

func (s *failingStore) CountEphemeral(ctx context.Context, kind string, now time.Time) (int, error) {
	if err := s.failure(); err != nil {
		return 0, err
	}
	return s.Store.CountEphemeral(ctx, kind, now)
}

func (s *failingStore) PurgeEphemeral(ctx context.Context, now time.Time) (int, error) {
	if err := s.failure(); err != nil {
		return 0, err
	}
	return s.Store.PurgeEphemeral(ctx, now)
}

func (s *failingStore) GetPrincipal(ctx context.Context, id string) (store.Principal, error) {
	if err := s.failure(); err != nil {
		return store.Principal{}, err
	}
	return s.Store.GetPrincipal(ctx, id)
}

func (s *failingStore) GetUserByLogin(ctx context.Context, loginName string) (store.Principal, error) {
	if err := s.failure(); err != nil {
		return store.Principal{}, err
	}
	return s.Store.GetUserByLogin(ctx, loginName)
}

func (s *failingStore) FindClientSecrets(ctx context.Context, clientID string, now time.Time) (store.Principal, []store.ClientSecret, error) {
	if err := s.failure(); err != nil {
		return store.Principal{}, nil, err
	}
	return s.Store.FindClientSecrets(ctx, clientID, now)
}

// TestStoreFailures checks the answers of every endpoint that reads the
// store while it fails: 503 with Retry-After when it is unreachable, 500
// otherwise; and that a failed request changed nothing.
func TestStoreFailures(t *testing.T) {
	fs := &failingStore{}
	e := newEnv(t, func(c *Config) { fs.Store, c.Store = c.Store, fs })
	verifier := oauth2.GenerateVerifier()
	refreshToken := e.signInAlice(t).RefreshToken
	code := e.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
	da := e.deviceAuth(t)

	requests := []struct {
		name string
		kind string // "json" or "page": the kind of answer
		send func(t *testing.T) response
	}{
		{"client credentials", "json", func(t *testing.T) response {
			return e.post(t, tokenPath, url.Values{"grant_type": {"client_credentials"}}, spClientID, e.spSecret)
		}},
		{"device code poll", "json", func(t *testing.T) response { return e.pollDevice(t, da.DeviceCode) }},
		{"authorization code", "json", func(t *testing.T) response { return e.redeem(t, code, verifier, testRedirect) }},
		{"refresh", "json", func(t *testing.T) response {
			return e.post(t, tokenPath, url.Values{"grant_type": {"refresh_token"}, "client_id": {cliID}, "refresh_token": {refreshToken}})
		}},
		{"device authorization", "json", func(t *testing.T) response {
			return e.post(t, deviceCodePath, url.Values{"client_id": {cliID}})
		}},
		{"device page", "page", func(t *testing.T) response { return e.submitDevice(t, da.UserCode, aliceLogin, alicePW, "approve") }},
		{"login page", "page", func(t *testing.T) response {
			resp, err := e.browserSignIn(t, e.httpClient(false), e.url+authorizePath+"?"+authRequestParams(verifier).Encode(), aliceLogin, alicePW, "approve")
			if err != nil {
				t.Fatal(err)
			}
			r, err := readResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}},
	}
	type outcome struct {
		Status     int
		Error      string // of a JSON answer
		RetryAfter string
		Says       bool // the answer says what to do
	}
	modes := []struct {
		name string
		err  error
		want map[string]outcome // by kind of answer
		says map[string]string  // by kind of answer
	}{
		{"unreachable", fmt.Errorf("dial tcp 192.0.2.1:5432: connection refused: %w", store.ErrUnavailable),
			map[string]outcome{"json": {503, "temporarily_unavailable", "5", true}, "page": {503, "", "5", true}},
			map[string]string{"json": "try again in a moment", "page": "Wait a moment and try again"}},
		{"broken", errors.New("database disk image is malformed"),
			map[string]outcome{"json": {500, "server_error", "", true}, "page": {500, "", "", true}},
			map[string]string{"json": "tell its operator", "page": "tell its operator"}},
	}
	for _, m := range modes {
		for _, rq := range requests {
			t.Run(m.name+"/"+rq.name, func(t *testing.T) {
				fs.setErr(m.err)
				defer fs.setErr(nil)
				r := rq.send(t)
				got := outcome{r.status, r.oauth().Code, r.header.Get("Retry-After"), strings.Contains(r.body, m.says[rq.kind])}
				if diff := cmp.Diff(m.want[rq.kind], got); diff != "" {
					t.Errorf("(-want +got):\n%s\n%s", diff, r.body)
				}
			})
		}
	}

	// The failed requests changed nothing: the code is still redeemable,
	// the device code still pending, and no attempt counted.
	if r := e.redeem(t, code, verifier, testRedirect); r.status != http.StatusOK {
		t.Errorf("redeem after the outage: %d %s", r.status, r.body)
	}
	e.approve(t, da.UserCode)
	if r := e.pollDevice(t, da.DeviceCode); r.status != http.StatusOK {
		t.Errorf("poll after the outage: %d %s", r.status, r.body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "connection refused") || !strings.Contains(logs, "malformed") {
		t.Errorf("the causes are not logged:\n%s", logs)
	}
	for name, s := range map[string]string{"password": alicePW, "client secret": e.spSecret, "refresh token": refreshToken,
		"authorization code": code, "device code": da.DeviceCode, "verifier": verifier} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds the %s", name)
		}
	}
}

// TestPurge checks that an issuer deletes the expired records from a
// request at most once a minute.
func TestPurge(t *testing.T) {
	e := newEnv(t, nil)
	ctx := t.Context()
	steps := []struct {
		name    string
		advance time.Duration // after putting a record that expires in a second
		left    int           // expired records the issuer's request left
	}{
		{"the first request purges", 2 * time.Second, 0},
		{"not again within a minute", 2 * time.Second, 1},
		{"a minute later", time.Minute, 0},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			now := e.clock.Now()
			must(t, e.store.PutEphemeral(ctx, store.Ephemeral{Kind: "test", Key: "k", Value: []byte("v"), ExpiresAt: now.Add(time.Second)}, now))
			e.clock.Advance(s.advance)
			e.post(t, tokenPath, url.Values{"grant_type": {"client_credentials"}}, spClientID, e.spSecret)
			n, err := e.store.PurgeEphemeral(ctx, e.clock.Now())
			if err != nil {
				t.Fatal(err)
			}
			if n != s.left {
				t.Errorf("%d expired records left, want %d", n, s.left)
			}
		})
	}
}

// TestRecordsHoldNoCodes checks that the store holds no device, user or
// authorization code, and no typed login name, in the clear.
func TestRecordsHoldNoCodes(t *testing.T) {
	e := newEnv(t, nil)
	verifier := oauth2.GenerateVerifier()
	da := e.deviceAuth(t)
	e.submitDevice(t, da.UserCode, "Typed-Login@example.com", "wrong", "approve")
	code := e.authCode(t, authRequestParams(verifier), alicePW, "approve").Get("code")
	now := e.clock.Now()
	userCode := strings.ReplaceAll(da.UserCode, "-", "")
	tests := []struct {
		name, kind, key string
	}{
		{"device code", kindDeviceCode, recordKey(da.DeviceCode)},
		{"user code", kindUserCode, recordKey(userCode)},
		{"authorization code", kindAuthCode, recordKey(code)},
		{"login name", kindLockoutLogin, recordKey(store.FoldLoginName("Typed-Login@example.com"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := e.store.GetEphemeral(t.Context(), tt.kind, tt.key, now)
			if err != nil {
				t.Fatalf("no record under the hash: %v", err)
			}
			for _, s := range []string{da.DeviceCode, userCode, code, "Typed-Login", "typed-login"} {
				if strings.Contains(rec.Key, s) || strings.Contains(string(rec.Value), s) {
					t.Errorf("the record holds %q: %s %s", s, rec.Key, rec.Value)
				}
			}
		})
	}
}

// lookupFailStore fails the sign-in lookup as the sqlite store does, its
// error quoting the login name.
type lookupFailStore struct {
	store.Store
}

func (s lookupFailStore) GetUserByLogin(ctx context.Context, loginName string) (store.Principal, error) {
	return store.Principal{}, fmt.Errorf("get user %q: %w", loginName, store.ErrUnavailable)
}

// TestSignInLookupFailure checks that a failed sign-in lookup is answered
// 503 and logged without the typed login name, which may be a password.
func TestSignInLookupFailure(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Store = lookupFailStore{c.Store} })
	da := e.deviceAuth(t)
	const typed = "hunter2-typed-in-the-login-field"
	r := e.submitDevice(t, da.UserCode, typed, alicePW, "approve")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" {
		t.Errorf("status %d, Retry-After %q\n%s", r.status, r.header.Get("Retry-After"), r.body)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "sign-in lookup failed") || !strings.Contains(logs, "[login name]") {
		t.Errorf("the failure is not logged:\n%s", logs)
	}
	if strings.Contains(logs, typed) {
		t.Errorf("the log holds the typed login name:\n%s", logs)
	}
}
