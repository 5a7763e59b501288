package issuer

import (
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"tether.dev/tether/internal/access"
	"tether.dev/tether/internal/audit"
	"tether.dev/tether/internal/store"
)

// Grant types of the token endpoint.
const (
	grantClientCredentials = "client_credentials"
	grantDeviceCode        = "urn:ietf:params:oauth:grant-type:device_code"
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
)

// oauthError is an error answer of the token or device authorization
// endpoint (RFC 6749 5.2), or of the authorization endpoint's redirect.
type oauthError struct {
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	status      int
	retryAfter  time.Duration // sent as Retry-After if not zero
	cause       error         // logged, never sent
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

// logAttrs describe a refusal for the log. Descriptions name no secret:
// they quote only client IDs, scopes, resources and parameter names.
func (e *oauthError) logAttrs(r *http.Request) []any {
	attrs := []any{"oauth_error", e.Code, "description", e.Description, "remote_addr", r.RemoteAddr}
	if e.cause != nil {
		attrs = append(attrs, "err", e.cause)
	}
	return attrs
}

// level is how loudly a refusal is logged: the hub's failures as errors,
// failed authentication as information, the rest (such as every
// authorization_pending of a device code poll) for debugging.
func (e *oauthError) level() slog.Level {
	switch {
	case e.status == http.StatusServiceUnavailable:
		return slog.LevelWarn
	case e.status >= 500:
		return slog.LevelError
	case e.Code == "invalid_client" || e.Code == "invalid_grant":
		return slog.LevelInfo
	}
	return slog.LevelDebug
}

// badRequest is a 400 answer.
func badRequest(code, format string, args ...any) *oauthError {
	return &oauthError{Code: code, Description: fmt.Sprintf(format, args...), status: http.StatusBadRequest}
}

// invalidClient is the 401 answer to a client that failed to
// authenticate.
func invalidClient(format string, args ...any) *oauthError {
	return &oauthError{Code: "invalid_client", Description: fmt.Sprintf(format, args...), status: http.StatusUnauthorized}
}

// serverError is a 500 answer, whose cause is logged.
func serverError(cause error) *oauthError {
	return &oauthError{Code: "server_error", Description: "the hub could not complete the request; try again, and tell its operator if it persists", status: http.StatusInternalServerError, cause: cause}
}

// unavailable is the 503 answer to try again later: the store is
// unreachable, or busy with the same sign-in, or the issuer is full.
func unavailable(description string, retryAfter time.Duration, cause error) *oauthError {
	return &oauthError{Code: "temporarily_unavailable", Description: description, status: http.StatusServiceUnavailable, retryAfter: retryAfter, cause: cause}
}

// storeError is the answer to a failed store call: 503 if the store could
// not be reached or the sign-in's record kept changing (a retry may
// succeed), else 500. The cause is logged.
func storeError(err error) *oauthError {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		return unavailable("the hub cannot reach its database just now; try again in a moment", retryUnavailable, err)
	case errors.Is(err, errBusy):
		return unavailable("too many requests for this sign-in at once; try again in a moment", retryUnavailable, err)
	}
	return serverError(err)
}

// errClientAuth is the one answer to an unknown client ID and a wrong or
// expired secret, so the answer does not tell which client IDs exist.
const errClientAuth = "client authentication failed: unknown client ID, or a wrong or expired secret"

func (i *Issuer) writeOAuthError(w http.ResponseWriter, r *http.Request, e *oauthError) {
	if e.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Basic realm="tether", charset="UTF-8"`)
	}
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	i.logger.Log(r.Context(), e.level(), "token request refused", e.logAttrs(r)...)
	writeJSON(w, e.status, e)
}

// readForm parses a form-encoded POST body (never the query), bounded,
// and refuses repeated parameters (RFC 6749 3.1).
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, *oauthError) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "the body must be application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		return nil, badRequest("invalid_request", "the form cannot be read: %v", err)
	}
	for k, v := range r.PostForm {
		if len(v) > 1 && k != "resource" {
			return nil, badRequest("invalid_request", "the parameter %s is repeated", boundedQuote(k))
		}
	}
	return r.PostForm, nil
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	form, oerr := readForm(w, r)
	if oerr != nil {
		i.writeOAuthError(w, r, oerr)
		return
	}
	var resp tokenResponse
	switch gt := form.Get("grant_type"); gt {
	case grantClientCredentials:
		resp, oerr = i.clientCredentials(r, form)
	case grantDeviceCode:
		resp, oerr = i.deviceCodeGrant(r, form)
	case grantAuthorizationCode:
		resp, oerr = i.authorizationCodeGrant(r, form)
	case grantRefreshToken:
		resp, oerr = i.refreshTokenGrant(r, form)
	case "":
		oerr = badRequest("invalid_request", "grant_type is required")
	default:
		oerr = badRequest("unsupported_grant_type", "grant type %s is not supported; use %s, %s, %s or %s",
			boundedQuote(gt), grantClientCredentials, grantDeviceCode, grantAuthorizationCode, grantRefreshToken)
	}
	if oerr != nil {
		i.auditToken(r, form, nil, oerr)
		i.writeOAuthError(w, r, oerr)
		return
	}
	i.auditToken(r, form, &resp, nil)
	writeJSON(w, http.StatusOK, resp)
}

// auditToken records a token endpoint's answer: to whom a token was
// issued (read from the access token just made), or why not.
func (i *Issuer) auditToken(r *http.Request, form url.Values, resp *tokenResponse, oerr *oauthError) {
	if i.cfg.Audit == nil {
		return
	}
	e := audit.Event{Time: i.cfg.Now(), Type: audit.TypeSignIn, Verb: form.Get("grant_type"), SourceAddr: r.RemoteAddr,
		Resource: "token", Decision: audit.DecisionAllow, Status: http.StatusOK}
	if c, err := clientOf(r, form); err == nil && c.id != i.cfg.CLIClientID && c.id != i.cfg.ConsoleClientID {
		e.Name = c.id // a service principal's client (application) ID; never the secret
	}
	if oerr != nil {
		e.Status, e.Reason, e.Decision = oerr.status, oerr.Code+": "+oerr.Description, audit.DecisionDeny
		if e.Status == 0 {
			e.Status = http.StatusBadRequest
		}
		if e.Status >= 500 {
			e.Decision = audit.DecisionError
		}
		i.cfg.Audit(e)
		return
	}
	if parts := strings.Split(resp.AccessToken, "."); len(parts) == 3 {
		var c struct{ OID, Name, IDTyp string }
		if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil && json.Unmarshal(b, &c) == nil {
			e.PrincipalID, e.PrincipalName, e.PrincipalType = c.OID, c.Name, c.IDTyp
		}
	}
	e.Reason = "a token issued"
	i.cfg.Audit(e)
}

// client is how a client identified itself: client_id and client_secret
// from HTTP Basic authentication or the form.
type client struct {
	id, secret string
}

// clientOf reads the client's credentials. Both ways may be used at once
// only if they agree.
func clientOf(r *http.Request, form url.Values) (client, *oauthError) {
	c := client{id: form.Get("client_id"), secret: form.Get("client_secret")}
	user, pass, basic := r.BasicAuth()
	if !basic {
		if r.Header.Get("Authorization") != "" {
			return client{}, invalidClient("only HTTP Basic client authentication is supported")
		}
		return c, nil
	}
	// RFC 6749 2.3.1: both are form-encoded before Basic encoding.
	id, err1 := url.QueryUnescape(user)
	secret, err2 := url.QueryUnescape(pass)
	if err1 != nil || err2 != nil {
		return client{}, invalidClient("the Basic credentials are not form-encoded")
	}
	if c.id != "" && c.id != id || c.secret != "" && c.secret != secret {
		return client{}, badRequest("invalid_request", "the client credentials in the Authorization header and in the form differ")
	}
	return client{id: id, secret: secret}, nil
}

// cliRequest checks a request of the tether CLI, a public client: its
// client ID, no secret, and the resource if one is named. With
// orConsole, the console (the other public client) may send it too.
func (i *Issuer) cliRequest(r *http.Request, form url.Values, orConsole bool) (client, *oauthError) {
	c, oerr := clientOf(r, form)
	if oerr == nil {
		oerr = i.cliClient(c, orConsole)
	}
	if oerr == nil {
		oerr = i.checkResource(form)
	}
	return c, oerr
}

// cliClient checks that c is the tether CLI or, with orConsole, the
// console.
func (i *Issuer) cliClient(c client, orConsole bool) *oauthError {
	switch {
	case c.id == "":
		return badRequest("invalid_request", "client_id is required")
	case orConsole && c.id == i.cfg.ConsoleClientID:
		if c.secret != "" {
			return invalidClient("the console is a public client: send no client secret")
		}
		return nil
	case c.id != i.cfg.CLIClientID:
		return invalidClient("client %s may not use this grant: people sign in only through the tether CLI (client ID %s)", boundedQuote(c.id), i.cfg.CLIClientID)
	case c.secret != "":
		return invalidClient("the tether CLI is a public client: send no client secret")
	}
	return nil
}

func (i *Issuer) clientCredentials(r *http.Request, form url.Values) (tokenResponse, *oauthError) {
	c, oerr := clientOf(r, form)
	switch {
	case oerr != nil:
		return tokenResponse{}, oerr
	case c.id == "" || c.secret == "":
		return tokenResponse{}, invalidClient("client credentials need client_id and client_secret (HTTP Basic or form)")
	case c.id == i.cfg.CLIClientID:
		return tokenResponse{}, badRequest("unauthorized_client", "the tether CLI is a public client and cannot use client credentials; sign in as a person (device code or browser)")
	}
	now := i.cfg.Now()
	sp, secrets, err := i.cfg.Store.FindClientSecrets(r.Context(), c.id, now)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return tokenResponse{}, invalidClient("%s", errClientAuth)
	case err != nil:
		return tokenResponse{}, storeError(fmt.Errorf("look up client %s: %w", c.id, err))
	case !MatchClientSecret(c.secret, secrets):
		e := invalidClient("%s", errClientAuth)
		e.cause = fmt.Errorf("client %s: no matching unexpired secret", c.id)
		return tokenResponse{}, e
	}
	if oerr := i.checkAppScope(form); oerr != nil {
		return tokenResponse{}, oerr
	}
	if oerr := i.checkResource(form); oerr != nil {
		return tokenResponse{}, oerr
	}
	resp, err := i.appTokens(now, sp.ID, sp.DisplayName, sp.ClientID)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	i.logger.Info("token issued", "grant_type", grantClientCredentials, "principal", sp.ID, "client_id", sp.ClientID)
	return resp, nil
}

func (i *Issuer) deviceCodeGrant(r *http.Request, form url.Values) (tokenResponse, *oauthError) {
	if _, oerr := i.cliRequest(r, form, false); oerr != nil {
		return tokenResponse{}, oerr
	}
	code := form.Get("device_code")
	if code == "" {
		return tokenResponse{}, badRequest("invalid_request", "device_code is required")
	}
	now := i.cfg.Now()
	g, state, err := i.devices.poll(r.Context(), now, code)
	if err != nil {
		return tokenResponse{}, storeError(err)
	}
	switch state {
	case pollUnknown:
		return tokenResponse{}, badRequest("invalid_grant", "unknown device code (it may have expired or been used); run the sign-in again")
	case pollExpired:
		return tokenResponse{}, badRequest("expired_token", "the device code has expired; run the sign-in again")
	case pollTooFast:
		return tokenResponse{}, badRequest("slow_down", "polling too fast; wait %s between polls", g.Interval)
	case pollPending:
		return tokenResponse{}, badRequest("authorization_pending", "waiting for the person to sign in in the browser")
	case pollDenied:
		return tokenResponse{}, badRequest("access_denied", "the sign-in was denied in the browser")
	}
	return i.issueToPerson(grantDeviceCode, i.cfg.CLIClientID, now, g.User, g.Scopes, "")
}

func (i *Issuer) authorizationCodeGrant(r *http.Request, form url.Values) (tokenResponse, *oauthError) {
	c, oerr := i.cliRequest(r, form, true)
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	code, verifier := form.Get("code"), form.Get("code_verifier")
	switch {
	case code == "":
		return tokenResponse{}, badRequest("invalid_request", "code is required")
	case verifier == "":
		return tokenResponse{}, badRequest("invalid_request", "code_verifier is required: this issuer requires PKCE")
	}
	now := i.cfg.Now()
	// The code is used up by this attempt, whatever its outcome.
	ac, ok, err := i.codes.take(r.Context(), now, code)
	switch {
	case err != nil:
		return tokenResponse{}, storeError(err)
	case !ok:
		return tokenResponse{}, badRequest("invalid_grant", "the authorization code is unknown, expired or already used; sign in again")
	case ac.ClientID != c.id:
		return tokenResponse{}, badRequest("invalid_grant", "the authorization code was issued to another client")
	case ac.RedirectURI != form.Get("redirect_uri"):
		return tokenResponse{}, badRequest("invalid_grant", "redirect_uri does not match the one of the authorization request")
	case !validVerifier(verifier):
		return tokenResponse{}, badRequest("invalid_grant", "code_verifier is not 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)")
	case subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(verifier)), []byte(ac.Challenge)) != 1:
		return tokenResponse{}, badRequest("invalid_grant", "code_verifier does not match the code_challenge")
	}
	return i.issueToPerson(grantAuthorizationCode, c.id, now, ac.User, ac.Scopes, ac.Nonce)
}

// validVerifier checks a PKCE code verifier's form (RFC 7636 4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	return !strings.ContainsFunc(v, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || strings.ContainsRune("-._~", r))
	})
}

func (i *Issuer) refreshTokenGrant(r *http.Request, form url.Values) (tokenResponse, *oauthError) {
	c, oerr := i.cliRequest(r, form, true)
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	raw := form.Get("refresh_token")
	if raw == "" {
		return tokenResponse{}, badRequest("invalid_request", "refresh_token is required")
	}
	now := i.cfg.Now()
	rc, err := i.parseRefreshToken(raw, now)
	if err != nil {
		return tokenResponse{}, badRequest("invalid_grant", "%v; sign in again", err)
	}
	if rc.ClientID != c.id {
		return tokenResponse{}, badRequest("invalid_grant", "the refresh token was issued to another client")
	}
	granted := strings.Fields(rc.Scope)
	scopes := granted
	if s := form.Get("scope"); s != "" {
		scopes = strings.Fields(s)
		for _, sc := range scopes {
			if !slices.Contains(granted, sc) {
				return tokenResponse{}, badRequest("invalid_scope", "scope %s was not granted at sign-in", boundedQuote(sc))
			}
		}
	}
	p, oerr := i.currentPerson(r.Context(), rc)
	if oerr != nil {
		return tokenResponse{}, oerr
	}
	return i.issueToPerson(grantRefreshToken, c.id, now, p, scopes, "")
}

// currentPerson returns the user a refresh token names, if they still
// exist with the password they signed in with.
func (i *Issuer) currentPerson(ctx context.Context, rc refreshClaims) (person, *oauthError) {
	gone := badRequest("invalid_grant", "the user of this refresh token no longer exists; sign in again")
	p, err := i.cfg.Store.GetPrincipal(ctx, rc.Subject)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		return person{}, gone
	case err != nil:
		return person{}, storeError(fmt.Errorf("look up principal %s: %w", rc.Subject, err))
	case p.Type != access.PrincipalUser:
		return person{}, gone
	}
	// Only the sign-in lookup returns the password hash.
	u, err := i.cfg.Store.GetUserByLogin(ctx, p.LoginName)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return person{}, gone
	case err != nil:
		return person{}, storeError(fmt.Errorf("look up user %s: %w", rc.Subject, err))
	case u.ID != rc.Subject:
		return person{}, gone
	case !pwdMatches(rc.Pwd, u.PasswordHash):
		return person{}, badRequest("invalid_grant", "the user's password was changed or removed since this sign-in; sign in again")
	}
	return person{ID: u.ID, DisplayName: u.DisplayName, LoginName: u.LoginName, Pwd: rc.Pwd, AuthTime: time.Unix(rc.AuthTime, 0)}, nil
}

// issueToPerson issues p's tokens to clientID (the CLI or the console).
func (i *Issuer) issueToPerson(grant, clientID string, now time.Time, p person, scopes []string, nonce string) (tokenResponse, *oauthError) {
	resp, err := i.personTokens(now, clientID, p, scopes, nonce)
	if err != nil {
		return tokenResponse{}, serverError(err)
	}
	i.logger.Info("token issued", "grant_type", grant, "principal", p.ID, "client_id", clientID)
	return resp, nil
}

// scopesSupported are the scopes a person may ask for.
func (i *Issuer) scopesSupported() []string {
	return []string{scopeOpenID, scopeProfile, scopeOfflineAccess, i.cfg.Audience + "/.default"}
}

// personScopes parses a person's scope parameter: known scopes only, each
// once, in the order given.
func (i *Issuer) personScopes(raw string) ([]string, *oauthError) {
	supported := i.scopesSupported()
	var scopes []string
	for _, s := range strings.Fields(raw) {
		if !slices.Contains(supported, s) {
			return nil, badRequest("invalid_scope", "scope %s is not supported; this issuer grants %s", boundedQuote(s), strings.Join(supported, ", "))
		}
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	return scopes, nil
}

// checkAppScope checks a service principal's scope parameter: only the
// audience, as itself or as Entra's "<audience>/.default".
func (i *Issuer) checkAppScope(form url.Values) *oauthError {
	for _, s := range strings.Fields(form.Get("scope")) {
		if s != i.cfg.Audience && s != i.cfg.Audience+"/.default" {
			return badRequest("invalid_scope", "scope %s is not supported; a service principal may ask only for %s or %s/.default",
				boundedQuote(s), i.cfg.Audience, i.cfg.Audience)
		}
	}
	return nil
}

// checkResource checks the resource (RFC 8707) and audience parameters:
// the only resource is the hub.
func (i *Issuer) checkResource(form url.Values) *oauthError {
	for _, k := range []string{"resource", "audience"} {
		for _, v := range form[k] {
			if v != i.cfg.Audience {
				return badRequest("invalid_target", "%s %s is not served by this issuer; its tokens are for %s", k, boundedQuote(v), i.cfg.Audience)
			}
		}
	}
	return nil
}

// boundedQuote quotes a caller's value for a message, cut to 64 characters.
func boundedQuote(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%.64q...", s)
	}
	return fmt.Sprintf("%q", s)
}
