package credentials

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

const (
	// DefaultLoginTimeout bounds an interactive sign-in.
	DefaultLoginTimeout = 5 * time.Minute
	callbackPath        = "/callback"
)

// Browser opens url in the user's browser.
type Browser func(url string) error

// AuthCodeOptions tune Client.AuthCode.
type AuthCodeOptions struct {
	// OpenBrowser opens the authorization URL. Nil means printing it to
	// Prompt for the user to open; if it fails, the URL is printed too.
	OpenBrowser Browser
	// Prompt receives the instructions. Nil discards them.
	Prompt io.Writer
	// Timeout bounds the whole sign-in. Zero means DefaultLoginTimeout.
	Timeout time.Duration
}

// callback is what the loopback listener received.
type callback struct {
	code string
	err  error
}

// AuthCode runs the authorization code grant with PKCE (S256) on a
// loopback redirect (RFC 8252): it listens on 127.0.0.1 on a free port,
// sends the browser to the authorization endpoint, serves exactly one
// request to /callback, checks its state (and iss, RFC 9207, when present),
// redeems the code with the verifier and checks the ID token's nonce.
func (c *Client) AuthCode(ctx context.Context, opts AuthCodeOptions) (*oauth2.Token, error) {
	if c.Endpoints.AuthorizationURL == "" {
		return nil, fmt.Errorf("browser sign-in: issuer %s has no authorization endpoint", c.Endpoints.Issuer)
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultLoginTimeout
	}
	prompt := opts.Prompt
	if prompt == nil {
		prompt = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("browser sign-in: listen on loopback: %w", err)
	}
	redirect := fmt.Sprintf("http://%s%s", ln.Addr().String(), callbackPath)
	cfg := c.config(redirect)
	state, nonce, verifier := rand.Text(), rand.Text(), oauth2.GenerateVerifier()

	h := &callbackHandler{state: state, issuer: c.Endpoints.Issuer, result: make(chan callback, 1)}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln) // returns when Shutdown or Close below runs
	}()
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer scancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		<-served
	}()

	authOpts := append([]oauth2.AuthCodeOption{
		oauth2.S256ChallengeOption(verifier),
		oauth2.SetAuthURLParam("nonce", nonce),
	}, c.resourceOpts()...)
	authURL := cfg.AuthCodeURL(state, authOpts...)
	if opts.OpenBrowser == nil {
		fmt.Fprintf(prompt, "To sign in, open this URL in a browser on this machine:\n%s\n", authURL)
	} else if err := opts.OpenBrowser(authURL); err != nil {
		fmt.Fprintf(prompt, "Could not open a browser (%v). To sign in, open this URL on this machine:\n%s\n", err, authURL)
	}

	var cb callback
	select {
	case cb = <-h.result:
	case <-ctx.Done():
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("browser sign-in: not completed within %s", timeout)
		}
		return nil, fmt.Errorf("browser sign-in: %w", ctx.Err())
	}
	if cb.err != nil {
		return nil, fmt.Errorf("browser sign-in: %w", cb.err)
	}
	tok, err := cfg.Exchange(c.ctx(ctx), cb.code, append([]oauth2.AuthCodeOption{oauth2.VerifierOption(verifier)}, c.resourceOpts()...)...)
	if err != nil {
		return nil, fmt.Errorf("browser sign-in: redeem the code: %w", oauthError(err))
	}
	if id, _ := tok.Extra("id_token").(string); id != "" {
		got, err := jwtClaim(id, "nonce")
		if err != nil {
			return nil, fmt.Errorf("browser sign-in: ID token: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(nonce)) != 1 {
			return nil, errors.New("browser sign-in: the ID token's nonce does not match the request")
		}
	}
	return tok, nil
}

// callbackHandler answers the one redirect from the authorization server.
type callbackHandler struct {
	state  string
	issuer string
	result chan callback // size 1: receives exactly one callback

	mu   sync.Mutex
	done bool // guarded by mu: a callback was received
}

func (h *callbackHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != callbackPath || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	first := !h.done
	h.done = true
	h.mu.Unlock()
	if !first {
		writePage(w, http.StatusGone, "This sign-in has already been handled. You can close this window.")
		return
	}
	q := r.URL.Query()
	var cb callback
	switch {
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(h.state)) != 1:
		cb.err = errors.New("the redirect carries the wrong state (it does not belong to this sign-in); sign-in aborted")
	case q.Get("iss") != "" && strings.TrimSuffix(q.Get("iss"), "/") != strings.TrimSuffix(h.issuer, "/"):
		cb.err = fmt.Errorf("the redirect names issuer %q, not %q; sign-in aborted", q.Get("iss"), h.issuer)
	case q.Get("error") != "":
		cb.err = &OAuthError{Code: q.Get("error"), Description: q.Get("error_description")}
	case q.Get("code") == "":
		cb.err = errors.New("the redirect carries no authorization code")
	default:
		cb.code = q.Get("code")
	}
	if cb.err != nil {
		writePage(w, http.StatusBadRequest, "Sign-in failed: "+cb.err.Error()+". Return to the terminal.")
	} else {
		writePage(w, http.StatusOK, "Signed in. You can close this window and return to the terminal.")
	}
	h.result <- cb // never blocks: size one, sent once
}

func writePage(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><title>Tether sign-in</title><p>%s</p>\n", html.EscapeString(msg))
}

// jwtClaim returns a string claim of a JWT without verifying it: the hub
// verifies tokens; the client only checks that the response is its own.
func jwtClaim(jwt, name string) (string, error) {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return "", errors.New("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		return "", fmt.Errorf("JWT payload: %w", err)
	}
	s, _ := claims[name].(string)
	return s, nil
}
