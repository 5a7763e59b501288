package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"tether.dev/tether/internal/hub"
	"tether.dev/tether/internal/store"
)

// signInTTL bounds a sign-in in progress: from the redirect to the issuer
// to the return to the callback.
const signInTTL = 10 * time.Minute

// pendingSignIn is a sign-in in progress, stored sealed under the state.
type pendingSignIn struct {
	Issuer   int    `json:"issuer"`
	Verifier string `json:"verifier"` // PKCE
	Nonce    string `json:"nonce"`
	// ReturnTo is the console path to show after signing in.
	ReturnTo string `json:"returnTo"`
}

// oidcProvider is one issuer's discovered configuration and the console's
// client there.
type oidcProvider struct {
	issuer   Issuer
	client   *http.Client
	oauth    oauth2.Config
	verifier *oidc.IDTokenVerifier
}

// remoteAddrKey carries the browser's address to the in-process issuer.
type remoteAddrKey struct{}

// handlerTransport sends requests to the hub's own handler, in process:
// how the console reaches the embedded issuer.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	in := req.Clone(req.Context())
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	if in.Body == nil {
		in.Body = http.NoBody
	}
	in.RemoteAddr, _ = req.Context().Value(remoteAddrKey{}).(string)
	rec := newRecorder()
	t.h.ServeHTTP(rec, in)
	return rec.response(req), nil
}

// providerFor returns the provider of the issuer at issuerURL.
func (s *server) providerFor(ctx context.Context, r *http.Request, issuerURL string) (*oidcProvider, error) {
	for i, is := range s.cfg.Issuers {
		if is.URL == issuerURL {
			return s.provider(ctx, r, i)
		}
	}
	return nil, fmt.Errorf("%w: the issuer %s is no longer configured", errSignInAgain, issuerURL)
}

// provider returns issuer i's provider, discovering it on first use (a
// failed discovery is tried again by the next request).
func (s *server) provider(ctx context.Context, r *http.Request, i int) (*oidcProvider, error) {
	p := s.providers[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.p != nil {
		return p.p, nil
	}
	is := s.cfg.Issuers[i]
	client := is.HTTPClient
	if is.Embedded {
		client = &http.Client{Transport: handlerTransport{s.api}, Timeout: 30 * time.Second}
	} else if client == nil {
		client = &http.Client{Timeout: 30 * time.Second}
	}
	// The key set fetches keys later with the context given here: one
	// that outlives this request (no deadline, no cancel), with the client.
	dctx := oidc.ClientContext(context.WithoutCancel(ctx), client)
	dctx = context.WithValue(dctx, remoteAddrKey{}, r.RemoteAddr)
	op, err := oidc.NewProvider(dctx, is.URL)
	if err != nil {
		return nil, fmt.Errorf("discover the issuer %s: %w", is.URL, err)
	}
	scopes := is.Scopes
	if scopes == nil {
		scopes = []string{"profile", "offline_access"}
	}
	if !slices.Contains(scopes, oidc.ScopeOpenID) {
		scopes = append([]string{oidc.ScopeOpenID}, scopes...)
	}
	p.p = &oidcProvider{
		issuer: is, client: client,
		oauth: oauth2.Config{ClientID: is.ClientID, ClientSecret: is.ClientSecret, Endpoint: op.Endpoint(),
			RedirectURL: s.redirect, Scopes: scopes},
		verifier: op.Verifier(&oidc.Config{ClientID: is.ClientID, Now: s.cfg.Now}),
	}
	return p.p, nil
}

// context is ctx with the provider's client and the browser's address.
func (p *oidcProvider) context(ctx context.Context, r *http.Request) context.Context {
	return context.WithValue(context.WithValue(ctx, oauth2.HTTPClient, p.client), remoteAddrKey{}, r.RemoteAddr)
}

// refresh redeems a refresh token.
func (p *oidcProvider) refresh(ctx context.Context, r *http.Request, refreshToken string) (*oauth2.Token, error) {
	src := p.oauth.TokenSource(p.context(ctx, r), &oauth2.Token{RefreshToken: refreshToken, Expiry: time.Unix(1, 0)})
	return src.Token()
}

// login starts a sign-in: it keeps the PKCE verifier and nonce under a
// new state, binds the state to this browser with a cookie, and sends the
// browser to the issuer.
func (s *server) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	i := 0
	if v := r.URL.Query().Get("issuer"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n >= len(s.cfg.Issuers) {
			s.signInPage(w, r, http.StatusBadRequest, "There is no such issuer to sign in with; pick one below.")
			return
		}
		i = n
	}
	p, err := s.provider(r.Context(), r, i)
	if err != nil {
		s.logger.Warn("console sign-in: issuer unreachable", "err", err)
		s.signInPage(w, r, http.StatusBadGateway, fmt.Sprintf("The issuer %s cannot be reached just now; try again in a moment, and tell the hub's operator if it persists.", s.cfg.Issuers[i].URL))
		return
	}
	if !s.admitSignIn(w, r) {
		return
	}
	state := newSecret()
	pending := pendingSignIn{Issuer: i, Verifier: oauth2.GenerateVerifier(), Nonce: newSecret(), ReturnTo: returnTo(r.URL.Query().Get("return"))}
	v, err := seal(state, kindSignIn, pending)
	if err == nil {
		now := s.cfg.Now()
		err = s.cfg.Store.PutEphemeral(r.Context(), store.Ephemeral{Kind: kindSignIn, Key: recordKey(state), Value: v, ExpiresAt: now.Add(signInTTL)}, now)
	}
	if err != nil {
		s.storeFailed(w, r, "start the sign-in", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: signInCookie, Value: state, Path: "/", MaxAge: int(signInTTL / time.Second),
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	http.Redirect(w, r, p.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(pending.Verifier), oidc.Nonce(pending.Nonce)), http.StatusSeeOther)
}

// maxSignIns bounds the sign-ins in progress (across the replicas; counted
// before adding, so concurrent ones may pass it by a few): anyone may
// start one, and each is a record in the store for signInTTL.
const maxSignIns = 10_000

// admitSignIn purges the expired records now and then (the embedded
// issuer does too, but a hub whose people sign in elsewhere may never
// use it) and refuses a sign-in past maxSignIns. When it returns false
// it has answered.
func (s *server) admitSignIn(w http.ResponseWriter, r *http.Request) bool {
	now := s.cfg.Now()
	s.purgeMu.Lock()
	purge := now.Sub(s.lastPurge) >= purgeEvery
	if purge {
		s.lastPurge = now
	}
	s.purgeMu.Unlock()
	if purge {
		if _, err := s.cfg.Store.PurgeEphemeral(r.Context(), now); err != nil {
			s.logger.Warn("console: expired records not purged", "err", err)
		}
	}
	n, err := s.cfg.Store.CountEphemeral(r.Context(), kindSignIn, now)
	if err != nil {
		s.storeFailed(w, r, "start the sign-in", err)
		return false
	}
	if n >= maxSignIns {
		s.logger.Warn("console sign-in refused: too many in progress", "remote_addr", r.RemoteAddr)
		w.Header().Set("Retry-After", "60")
		s.signInPage(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress just now; try again in a minute.")
		return false
	}
	return true
}

// returnTo is a console path to return to after signing in: only paths
// of the console, else its start page.
func returnTo(path string) string {
	if !strings.HasPrefix(path, Path+"/") || strings.HasPrefix(path, Path+"/auth/") || strings.ContainsAny(path, "\\\r\n") || strings.Contains(path, "//") {
		return Path + "/clusters"
	}
	return path
}

// callback completes a sign-in: the state must be this browser's, the
// code is redeemed with the PKCE verifier, the ID token's nonce must
// match, and the hub must accept the access token (GET /api/v1/me).
func (s *server) callback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	q := r.URL.Query()
	ck, err := r.Cookie(signInCookie)
	clearCookie(w, signInCookie)
	state := q.Get("state")
	if err != nil || state == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(state)) != 1 {
		s.signInPage(w, r, http.StatusBadRequest, "This sign-in was not started in this browser, or took too long. Sign in again.")
		return
	}
	now := s.cfg.Now()
	e, err := s.cfg.Store.TakeEphemeral(r.Context(), kindSignIn, recordKey(state), now)
	if errors.Is(err, store.ErrNotFound) {
		s.signInPage(w, r, http.StatusBadRequest, "This sign-in has expired or was already completed. Sign in again.")
		return
	}
	if err != nil {
		s.storeFailed(w, r, "complete the sign-in", err)
		return
	}
	var pending pendingSignIn
	if err := unseal(state, kindSignIn, e.Value, &pending); err != nil || pending.Issuer >= len(s.cfg.Issuers) {
		s.signInPage(w, r, http.StatusBadRequest, "This sign-in cannot be completed. Sign in again.")
		return
	}
	if msg := q.Get("error"); msg != "" {
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		s.signInPage(w, r, http.StatusUnauthorized, "The issuer did not sign you in ("+msg+").")
		return
	}
	p, err := s.provider(r.Context(), r, pending.Issuer)
	if err != nil {
		s.signInPage(w, r, http.StatusBadGateway, "The issuer cannot be reached just now; sign in again in a moment.")
		return
	}
	if iss := q.Get("iss"); iss != "" && iss != p.issuer.URL { // RFC 9207: a mix-up
		s.signInPage(w, r, http.StatusBadRequest, "The sign-in came back from another issuer than the one it was sent to. Sign in again.")
		return
	}
	ctx := p.context(r.Context(), r)
	tok, err := p.oauth.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(pending.Verifier))
	if err != nil {
		s.logger.Info("console sign-in refused", "remote_addr", r.RemoteAddr, "err", err)
		s.signInPage(w, r, http.StatusUnauthorized, "The issuer refused to complete the sign-in. Sign in again.")
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.verifier.Verify(ctx, raw)
	if err == nil && subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(pending.Nonce)) != 1 {
		err = errors.New("the ID token's nonce is not this sign-in's")
	}
	if err != nil {
		s.logger.Info("console sign-in refused: ID token", "remote_addr", r.RemoteAddr, "err", err)
		s.signInPage(w, r, http.StatusUnauthorized, "The issuer's answer could not be verified. Sign in again.")
		return
	}
	var claims struct {
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
	}
	idt.Claims(&claims)
	sess := &session{Issuer: p.issuer.URL, AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, Expiry: tok.Expiry,
		Name: firstNonEmpty(claims.Name, claims.PreferredUsername, idt.Subject)}
	if sess.Expiry.IsZero() {
		sess.Expiry = now.Add(5 * time.Minute)
	}
	// The hub must accept the token: a misconfigured issuer (audience,
	// scopes) is told now, not on every page.
	var me hub.MeView
	if err := s.callAPI(r, sess.AccessToken, http.MethodGet, "/api/v1/me", nil, &me); err != nil {
		s.signInPage(w, r, http.StatusForbidden, "The hub does not accept this sign-in: "+errorText(err))
		return
	}
	sess.Name, sess.PrincipalID = firstNonEmpty(me.DisplayName, sess.Name), me.ID
	if err := s.createSession(r.Context(), w, sess); err != nil {
		s.storeFailed(w, r, "start your session", err)
		return
	}
	s.logger.Info("console signed in", "principal", me.ID, "remote_addr", r.RemoteAddr)
	http.Redirect(w, r, pending.ReturnTo, http.StatusSeeOther)
}

// signOut ends the session.
func (s *server) signOut(w http.ResponseWriter, c *call) {
	s.endSession(c.r.Context(), w, c.sess)
	http.Redirect(w, c.r, Path+"/", http.StatusSeeOther)
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

// signInPage offers the issuers to sign in with, with msg as an error:
// a link each, a#sign-in for the default (the first) and a#sign-in-N for
// the others, each with the issuer's URL in data-issuer (what scripts and
// tests pick one by; the name is for people and may change).
func (s *server) signInPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	type choice struct {
		ID, Name, Issuer, URL string
	}
	var choices []choice
	ret := r.URL.RequestURI()
	if r.Method != http.MethodGet || r.URL.Path == Path+"/" || strings.HasPrefix(r.URL.Path, Path+"/auth/") {
		ret = ""
	}
	for i, is := range s.cfg.Issuers {
		q := "?issuer=" + strconv.Itoa(i)
		if ret != "" {
			q += "&return=" + urlQueryEscape(ret)
		}
		id := "sign-in"
		if i > 0 {
			id = "sign-in-" + strconv.Itoa(i)
		}
		choices = append(choices, choice{ID: id, Name: is.Name, Issuer: is.URL, URL: Path + loginPath + q})
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, status, "signin", pageData{Title: "Sign in", Error: msg, Body: choices})
}
