package issuer

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Bounds on values an authorization request carries through the login
// page.
const (
	maxRedirectURI = 2048
	maxStateLen    = 1024 // state and nonce
)

// authParams are the request parameters the login page carries in hidden
// fields to its POST.
var authParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "resource"}

// authRequest is a validated authorization request.
type authRequest struct {
	clientID    string
	redirect    *url.URL
	redirectURI string // as given: the token request must repeat it exactly
	state       string
	nonce       string
	challenge   string
	scopes      []string
	params      url.Values // authParams as given
}

// parseAuthRequest validates an authorization request (RFC 6749 4.1.1,
// RFC 7636 4.3). A refusal of the client or the redirect URI, which must
// not lead to a redirect, is returned as notice, for an error page; any
// other refusal as oerr, for the redirect URI.
func (i *Issuer) parseAuthRequest(v url.Values) (req authRequest, notice string, oerr *oauthError) {
	for k, vs := range v {
		if len(vs) > 1 {
			return req, fmt.Sprintf("The sign-in request repeats the parameter %s. Start the sign-in again from tether login.", boundedQuote(k)), nil
		}
	}
	var redirect *url.URL
	var err error
	switch id := v.Get("client_id"); {
	case id == i.cfg.CLIClientID:
		redirect, err = parseLoopbackRedirect(v.Get("redirect_uri"))
	case id != "" && id == i.cfg.ConsoleClientID:
		redirect, err = i.consoleRedirect(v.Get("redirect_uri"))
	default:
		return req, fmt.Sprintf("The sign-in request is for client %s, which this hub does not know. Sign in with tether login, or through the hub's console.", boundedQuote(id)), nil
	}
	if err != nil {
		return req, fmt.Sprintf("The sign-in request cannot be answered: %v.", err), nil
	}
	req = authRequest{clientID: v.Get("client_id"), redirect: redirect, redirectURI: v.Get("redirect_uri"), state: v.Get("state"), nonce: v.Get("nonce"),
		challenge: v.Get("code_challenge"), params: url.Values{}}
	if len(req.state) > maxStateLen {
		return authRequest{}, fmt.Sprintf("The sign-in request's state is longer than %d bytes.", maxStateLen), nil
	}
	for _, k := range authParams {
		if s := v.Get(k); s != "" {
			req.params.Set(k, s)
		}
	}
	switch {
	case v.Get("response_type") != "code":
		return req, "", badRequest("unsupported_response_type", "response_type must be code")
	case v.Get("code_challenge_method") != "S256":
		return req, "", badRequest("invalid_request", "PKCE is required: code_challenge_method must be S256")
	case !validChallenge(req.challenge):
		return req, "", badRequest("invalid_request", "code_challenge must be the 43-character base64url SHA-256 of the code verifier")
	case len(req.nonce) > maxStateLen:
		return req, "", badRequest("invalid_request", "nonce is longer than %d bytes", maxStateLen)
	case v.Has("request") || v.Has("request_uri"):
		return req, "", badRequest("request_not_supported", "request objects are not supported")
	case slices.Contains(strings.Fields(v.Get("prompt")), "none"):
		return req, "", badRequest("login_required", "this issuer always asks for a password")
	}
	if req.scopes, oerr = i.personScopes(v.Get("scope")); oerr != nil {
		return req, "", oerr
	}
	if oerr := i.checkResource(v); oerr != nil {
		return req, "", oerr
	}
	return req, "", nil
}

// parseLoopbackRedirect accepts only loopback redirect URIs of native
// apps (RFC 8252 7.3): http, host 127.0.0.1, [::1] or localhost, any
// port, no user information or fragment.
func parseLoopbackRedirect(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("it has no redirect_uri")
	}
	if len(s) > maxRedirectURI {
		return nil, fmt.Errorf("its redirect_uri is longer than %d bytes", maxRedirectURI)
	}
	refuse := fmt.Errorf("the redirect address %s is not allowed: only http://127.0.0.1:PORT/..., http://[::1]:PORT/... and http://localhost:PORT/... are (RFC 8252)", boundedQuote(s))
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "http" || u.Opaque != "" || u.User != nil || u.Fragment != "" || strings.Contains(s, "#") {
		return nil, refuse
	}
	host, port := u.Hostname(), u.Port()
	switch {
	case host == "127.0.0.1" && u.Host == host+":"+port:
	case host == "::1" && u.Host == "[::1]:"+port:
	case strings.EqualFold(host, "localhost") && u.Host == host+":"+port:
	default:
		return nil, refuse
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
		return nil, refuse
	}
	return u, nil
}

// consoleRedirect accepts only the console's one redirect URI, exactly as
// configured: the console is a public client too, and an open redirect
// for it would hand its codes to anyone.
func (i *Issuer) consoleRedirect(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("it has no redirect_uri")
	}
	if s != i.cfg.ConsoleRedirectURI {
		return nil, fmt.Errorf("the redirect address %s is not the console's (%s)", boundedQuote(s), i.cfg.ConsoleRedirectURI)
	}
	return url.Parse(s)
}

// checkConsoleClient checks the console client's settings: a client ID
// that is neither the CLI's nor the audience, and an https redirect URI
// without query or fragment.
func checkConsoleClient(cfg Config) error {
	if cfg.ConsoleClientID == "" {
		if cfg.ConsoleRedirectURI != "" {
			return errors.New("a console redirect URI without a console client ID")
		}
		return nil
	}
	switch cfg.ConsoleClientID {
	case cfg.CLIClientID, cfg.Audience:
		return fmt.Errorf("the console client ID %q must differ from the CLI client ID and the audience", cfg.ConsoleClientID)
	}
	u, err := url.Parse(cfg.ConsoleRedirectURI)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(cfg.ConsoleRedirectURI, "#") {
		return fmt.Errorf("console redirect URI %q: want https://HOST[:PORT]/PATH without query or fragment", cfg.ConsoleRedirectURI)
	}
	return nil
}

// validChallenge checks an S256 code challenge's form.
func validChallenge(c string) bool {
	return len(c) == 43 && !strings.ContainsFunc(c, func(r rune) bool {
		return !('A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	})
}

// formActionSource is the CSP source of the redirect's origin: browsers
// apply form-action to the redirect that answers the form. CSP has no
// syntax for IPv6 literals, so [::1] is allowed as any http URL. The
// console's redirect is https, to its own host.
func formActionSource(u *url.URL) string {
	if u.Scheme == "https" {
		return "https://" + u.Host
	}
	if strings.Contains(u.Hostname(), ":") {
		return "http:"
	}
	return "http://" + u.Host
}

// redirectTo sends the browser back to the client with params, the state
// and the issuer (RFC 9207).
func (i *Issuer) redirectTo(w http.ResponseWriter, r *http.Request, req authRequest, params url.Values) {
	u := *req.redirect
	q := u.Query()
	for k, v := range params {
		q[k] = v
	}
	if req.state != "" {
		q.Set("state", req.state)
	}
	q.Set("iss", i.cfg.URL)
	u.RawQuery = q.Encode()
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusSeeOther)
}

func (i *Issuer) redirectError(w http.ResponseWriter, r *http.Request, req authRequest, e *oauthError) {
	i.logger.Log(r.Context(), e.level(), "authorization request refused", e.logAttrs(r)...)
	i.redirectTo(w, r, req, url.Values{"error": {e.Code}, "error_description": {e.Description}})
}

// loginPage is the authorization endpoint's login page for req.
func (i *Issuer) loginPage(req authRequest, login string) page {
	hidden := make([]hiddenField, 0, len(req.params))
	for _, k := range authParams {
		if v := req.params.Get(k); v != "" {
			hidden = append(hidden, hiddenField{k, v})
		}
	}
	msg := fmt.Sprintf("Sign in with your account of the hub at %s. Your browser then returns to the tether command at %s.", i.cfg.URL, req.redirect.Host)
	if req.clientID == i.cfg.ConsoleClientID {
		msg = fmt.Sprintf("Sign in with your account of the hub at %s. Your browser then returns to the hub's console.", i.cfg.URL)
	}
	return page{
		Title:   "Sign in to Tether",
		Message: msg,
		Form:    &loginForm{Action: i.path + authorizePath, Hidden: hidden, Login: login},
	}
}

// serveAuthorize is the authorization endpoint: GET shows the login page
// for a valid request, POST signs in and redirects with a code.
func (i *Issuer) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	if r.Method == http.MethodPost {
		if err := readPageForm(w, r); err != nil {
			writePage(w, http.StatusBadRequest, page{Title: "Sign-in failed", Error: "The form could not be read."}, "")
			return
		}
		v = r.PostForm
	}
	req, notice, oerr := i.parseAuthRequest(v)
	switch {
	case notice != "":
		i.logger.Info("authorization request refused", "remote_addr", r.RemoteAddr, "err", notice)
		writePage(w, http.StatusBadRequest, page{Title: "Sign-in failed", Error: notice}, "")
		return
	case oerr != nil:
		i.redirectError(w, r, req, oerr)
		return
	}
	formAction := formActionSource(req.redirect)
	if r.Method == http.MethodGet {
		hint := v.Get("login_hint")
		if len(hint) > 256 {
			hint = ""
		}
		writePage(w, http.StatusOK, i.loginPage(req, hint), formAction)
		return
	}
	if v.Get("action") == "deny" {
		i.redirectError(w, r, req, badRequest("access_denied", "the person denied the sign-in"))
		return
	}
	login := v.Get("login")
	who, f := i.signIn(r.Context(), r.RemoteAddr, login, v.Get("password"))
	if f != nil {
		f.write(w, i.loginPage(req, login), formAction)
		return
	}
	code := randomString(32)
	now := i.cfg.Now()
	ac := authCode{ClientID: req.clientID, RedirectURI: req.redirectURI, Challenge: req.challenge, Scopes: req.scopes, Nonce: req.nonce, User: who}
	err := i.codes.add(r.Context(), now, code, ac, now.Add(authCodeTTL))
	switch {
	case errors.Is(err, errFull):
		i.logger.Warn("authorization code refused", "err", err)
		writePage(w, http.StatusServiceUnavailable, page{Title: "Sign-in failed", Error: err.Error()}, "")
		return
	case err != nil:
		i.storeFailure(r.RemoteAddr, "authorization code not stored", err).write(w, i.loginPage(req, login), formAction)
		return
	}
	i.redirectTo(w, r, req, url.Values{"code": {code}})
}
