package issuer

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"tether.dev/tether/internal/store"
)

// pageCSP is the Content-Security-Policy of every page: no script, no
// content from elsewhere, forms post only to the issuer.
const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"

// page is what the page template shows.
type page struct {
	Title   string
	Message string // a paragraph of text
	Error   string // shown as an alert
	Form    *loginForm
}

// loginForm asks for a login name and password (and on the device page
// the user code) and offers to sign in or deny.
type loginForm struct {
	Action      string // absolute path
	Hidden      []hiddenField
	AskUserCode bool
	UserCode    string
	Login       string
	// Note warns what signing in does.
	Note string
}

type hiddenField struct{ Name, Value string }

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · Tether</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 30rem; margin: 3rem auto; padding: 0 1rem; line-height: 1.4; }
label { display: block; margin-top: 1rem; }
input { display: block; width: 100%; box-sizing: border-box; padding: .4rem; font-size: 1rem; }
button { margin: 1.2rem .5rem 0 0; padding: .4rem 1.2rem; font-size: 1rem; }
.error { color: #a00; font-weight: bold; }
.note { color: #555; font-size: .9rem; }
</style>
</head>
<body>
<h1>{{.Title}}</h1>
{{with .Error}}<p class="error" role="alert">{{.}}</p>{{end}}
{{with .Message}}<p>{{.}}</p>{{end}}
{{with .Form}}<form method="post" action="{{.Action}}">
{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">
{{end}}{{if .AskUserCode}}<label>Code shown in your terminal
<input name="user_code" value="{{.UserCode}}" autocomplete="off" autocapitalize="characters" spellcheck="false" required></label>
{{end}}<label>Login name
<input name="login" value="{{.Login}}" autocomplete="username" autocapitalize="none" spellcheck="false" required></label>
<label>Password
<input name="password" type="password" autocomplete="current-password" required></label>
{{with .Note}}<p class="note">{{.}}</p>{{end}}
<button type="submit" name="action" value="approve">Sign in</button>
<button type="submit" name="action" value="deny" formnovalidate>Deny</button>
</form>
{{end}}</body>
</html>
`))

// writePage answers with a page. formAction, if not empty, is added to
// the policy's form-action: where the form may lead after a redirect.
func writePage(w http.ResponseWriter, status int, p page, formAction string) {
	h := w.Header()
	csp := pageCSP
	if formAction != "" {
		csp += " " + formAction
	}
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	pageTemplate.Execute(w, p) // the client went away if this fails
}

// failure is a sign-in step's refusal, shown on the page.
type failure struct {
	status     int
	msg        string
	retryAfter time.Duration // for 429 and 503
}

func (f *failure) write(w http.ResponseWriter, p page, formAction string) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((f.retryAfter+time.Second-1)/time.Second)))
	}
	p.Error = f.msg
	writePage(w, f.status, p, formAction)
}

// tooMany is the 429 refusal of a locked-out attempt.
func tooMany(what string, wait time.Duration) *failure {
	wait = (wait + time.Second - 1).Truncate(time.Second)
	return &failure{status: http.StatusTooManyRequests, retryAfter: wait,
		msg: fmt.Sprintf("Too many failed attempts %s. Try again in %s.", what, wait)}
}

const wrongCredentials = "Wrong login name or password."

// storeFailure is the refusal of a sign-in step whose store call failed:
// 503 to try again in a moment if the store could not be reached (or the
// sign-in's record kept changing), else 500. It logs event with the cause.
func (i *Issuer) storeFailure(remoteAddr, event string, err error) *failure {
	switch {
	case errors.Is(err, store.ErrUnavailable):
		i.logger.Warn(event, "remote_addr", remoteAddr, "err", err)
		return &failure{status: http.StatusServiceUnavailable, retryAfter: retryUnavailable,
			msg: "The hub cannot reach its database just now. Wait a moment and try again."}
	case errors.Is(err, errBusy):
		i.logger.Warn(event, "remote_addr", remoteAddr, "err", err)
		return &failure{status: http.StatusServiceUnavailable, retryAfter: retryUnavailable,
			msg: "Too many requests for this sign-in at once. Wait a moment and try again."}
	}
	i.logger.Error(event, "remote_addr", remoteAddr, "err", err)
	return &failure{status: http.StatusInternalServerError, msg: "The hub could not check your sign-in. Try again; tell its operator if this persists."}
}

// redactedError is an error whose message has something left out.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactLogin leaves a typed login name out of a store error's message
// (stores quote it), to be logged: people type passwords into the wrong
// field. The error still matches what err matches.
func redactLogin(err error, login string) error {
	msg := strings.ReplaceAll(err.Error(), strconv.Quote(login), `"[login name]"`)
	return &redactedError{msg: strings.ReplaceAll(msg, login, "[login name]"), err: err}
}

// forgive uncounts an attempt of key under l that was no failure. If the
// store fails, the attempt stays counted, which is logged.
func (i *Issuer) forgive(ctx context.Context, l *lockout, key string) {
	if err := l.forgive(ctx, key, i.cfg.Now()); err != nil {
		i.logger.Warn("failed attempt not forgiven", "err", err)
	}
}

// readPageForm parses a page's POST body, bounded.
func readPageForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	return r.ParseForm()
}

// signIn checks a person's login name and password, under the per-login
// lock-out. A user without a password cannot sign in; an unknown login
// name costs the same password check as a known one.
func (i *Issuer) signIn(ctx context.Context, remoteAddr, login, password string) (person, *failure) {
	login = strings.TrimSpace(login)
	if login == "" || password == "" {
		return person{}, &failure{status: http.StatusBadRequest, msg: "Enter your login name and password."}
	}
	if len(login) > store.MaxLoginNameLen {
		return person{}, &failure{status: http.StatusForbidden, msg: wrongCredentials}
	}
	now := i.cfg.Now()
	key := store.FoldLoginName(login)
	// Typed login names are not logged: people type passwords into the
	// wrong field. A known user is logged by object ID.
	wait, err := i.logins.attempt(ctx, key, now)
	switch {
	case err != nil:
		return person{}, i.storeFailure(remoteAddr, "sign-in failed", err)
	case wait > 0:
		i.logger.Info("sign-in locked out", "remote_addr", remoteAddr)
		return person{}, tooMany("for this login name", wait)
	}
	u, err := i.cfg.Store.GetUserByLogin(ctx, login)
	hash := u.PasswordHash
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrInvalid):
		hash = nil
	case err != nil:
		i.forgive(ctx, i.logins, key)
		return person{}, i.storeFailure(remoteAddr, "sign-in lookup failed", redactLogin(err, login))
	}
	if len(hash) == 0 {
		// Spend the time a real check takes, so the answer does not tell
		// which login names exist or have a password.
		if dummy, err := i.dummyHash(); err == nil {
			CheckPassword(dummy, password)
		}
		i.logger.Info("sign-in failed", "remote_addr", remoteAddr, "err", "no such user, or no password")
		return person{}, &failure{status: http.StatusForbidden, msg: wrongCredentials}
	}
	ok, err := CheckPassword(hash, password)
	if err != nil {
		i.forgive(ctx, i.logins, key)
		i.logger.Error("sign-in: stored password hash unusable", "principal", u.ID, "err", err)
		return person{}, &failure{status: http.StatusInternalServerError, msg: "The hub could not check your password. Tell its operator."}
	}
	if !ok {
		i.logger.Info("sign-in failed", "principal", u.ID, "remote_addr", remoteAddr, "err", "wrong password")
		return person{}, &failure{status: http.StatusForbidden, msg: wrongCredentials}
	}
	if err := i.logins.reset(ctx, key); err != nil {
		// The failures stay counted until they are forgotten.
		i.logger.Warn("failed attempts not reset", "principal", u.ID, "err", err)
	}
	i.logger.Info("signed in", "principal", u.ID, "remote_addr", remoteAddr)
	return person{ID: u.ID, DisplayName: u.DisplayName, LoginName: u.LoginName, Pwd: pwdHash(hash), AuthTime: now}, nil
}
