package console

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxAPIResponse bounds an answer of the hub's API read in process (the
// audit trail's largest page is about this size).
const maxAPIResponse = 64 << 20

// recorder is the ResponseWriter of an in-process call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	over   bool // the body passed maxAPIResponse
}

func newRecorder() *recorder { return &recorder{header: http.Header{}} }

func (w *recorder) Header() http.Header { return w.header }

func (w *recorder) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *recorder) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(p) > maxAPIResponse {
		w.over = true
		return 0, errors.New("answer too large")
	}
	return w.body.Write(p)
}

// response is the recorded answer as an *http.Response to req.
func (w *recorder) response(req *http.Request) *http.Response {
	w.WriteHeader(http.StatusOK)
	return &http.Response{
		Status: fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)), StatusCode: w.status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: w.header, Body: io.NopCloser(bytes.NewReader(w.body.Bytes())), ContentLength: int64(w.body.Len()), Request: req,
	}
}

// apiError is an error answer of the hub's API: its status and the
// message of its Status object, which is written for people.
type apiError struct {
	Code    int
	Message string
}

func (e *apiError) Error() string { return e.Message }

// errorText is what the page shows for err: the API's message, or a
// generic sentence (the cause is logged, not shown).
func errorText(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Message
	}
	return "The hub could not complete the request; try again, and tell its operator if it persists."
}

// callAPI sends one request to the hub's API in process, as the
// browser's request r (its address, so the audit trail records the real
// source) with token, and decodes the JSON answer into out (if not nil).
// An error answer is returned as *apiError.
func (s *server) callAPI(r *http.Request, token, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u, err := url.Parse(path)
	if err != nil {
		return err
	}
	in, err := http.NewRequestWithContext(r.Context(), method, path, rd)
	if err != nil {
		return err
	}
	in.URL, in.RequestURI, in.Host, in.RemoteAddr, in.TLS = u, u.RequestURI(), r.Host, r.RemoteAddr, r.TLS
	in.Header.Set("Authorization", "Bearer "+token)
	in.Header.Set("Accept", "application/json")
	if body != nil {
		in.Header.Set("Content-Type", "application/json")
	}
	if ua := r.Header.Get("User-Agent"); ua != "" {
		in.Header.Set("User-Agent", ua)
	}
	rec := newRecorder()
	s.api.ServeHTTP(rec, in)
	rec.WriteHeader(http.StatusOK)
	if rec.over {
		return fmt.Errorf("%s %s: the answer is larger than %d bytes", method, u.Path, maxAPIResponse)
	}
	if rec.status >= 400 {
		var st struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(rec.body.Bytes(), &st) != nil || st.Message == "" {
			st.Message = strings.TrimSpace(rec.body.String())
			if st.Message == "" || strings.HasPrefix(st.Message, "{") {
				st.Message = http.StatusText(rec.status)
			}
		}
		return &apiError{Code: rec.status, Message: st.Message}
	}
	if out == nil || rec.status == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", method, u.Path, err)
	}
	return nil
}

// call is one signed-in browser request: the session and a fresh token.
type call struct {
	s     *server
	r     *http.Request
	sess  *session
	token string
}

// api calls the hub's API as the signed-in person.
func (c *call) api(method, path string, body, out any) error {
	return c.s.callAPI(c.r, c.token, method, path, body, out)
}

// maxFormBytes bounds a console form.
const maxFormBytes = 64 << 10

// begin finds the session of a request for a page and a fresh token.
// When it returns nil it has answered: the sign-in page, a sign-in again,
// or a store failure.
func (s *server) begin(w http.ResponseWriter, r *http.Request) *call {
	w.Header().Set("Cache-Control", "no-store")
	sess, ok := s.session(w, r)
	if !ok {
		return nil
	}
	if sess == nil {
		if r.URL.Query().Get("partial") != "" {
			http.Error(w, "signed out", http.StatusUnauthorized)
			return nil
		}
		s.signInPage(w, r, http.StatusOK, "")
		return nil
	}
	token, err := s.accessToken(r.Context(), r, sess)
	if err != nil {
		s.sessionOver(w, r, sess, err)
		return nil
	}
	return &call{s: s, r: r, sess: sess, token: token}
}

// sessionOver ends a session whose tokens failed, and asks to sign in
// again.
func (s *server) sessionOver(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	s.logger.Info("console session over", "principal", sess.PrincipalID, "err", err)
	s.endSession(r.Context(), w, sess)
	if r.URL.Query().Get("partial") != "" {
		http.Error(w, "signed out", http.StatusUnauthorized)
		return
	}
	s.signInPage(w, r, http.StatusOK, "Your session has ended; sign in again.")
}

// page wraps the handler of a page that needs a session.
func (s *server) page(h func(http.ResponseWriter, *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c := s.begin(w, r); c != nil {
			h(w, c)
		}
	}
}

// post wraps the handler of a form: a session, the same origin and the
// session's CSRF token are required.
func (s *server) post(h func(http.ResponseWriter, *call)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		if err := r.ParseForm(); err != nil {
			w.Header().Set("Cache-Control", "no-store")
			s.render(w, http.StatusBadRequest, "error", pageData{Title: "Bad request", Error: "The form could not be read."})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		sess, ok := s.session(w, r)
		if !ok {
			return
		}
		if sess == nil && r.URL.Path == Path+signOutPath {
			http.Redirect(w, r, Path+"/", http.StatusSeeOther) // signed out already
			return
		}
		if err := s.checkPost(r, sess); err != nil {
			s.logger.Info("console form refused", "remote_addr", r.RemoteAddr, "err", err)
			data := pageData{Title: "Request refused", Error: "The request was refused: " + err.Error() + ". Go back, reload the page and try again."}
			if sess != nil {
				data.Who, data.CSRF = sess.Name, sess.CSRF
			}
			s.render(w, http.StatusForbidden, "error", data)
			return
		}
		if r.URL.Path == Path+signOutPath {
			h(w, &call{s: s, r: r, sess: sess})
			return
		}
		token, err := s.accessToken(r.Context(), r, sess)
		if err != nil {
			s.sessionOver(w, r, sess, err)
			return
		}
		h(w, &call{s: s, r: r, sess: sess, token: token})
	}
}

// failed answers a page whose API call failed: a refused token ends the
// session; other errors are shown on the page.
func (c *call) failed(w http.ResponseWriter, title, active string, err error) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Code == http.StatusUnauthorized {
		c.s.sessionOver(w, c.r, c.sess, err)
		return
	}
	status := http.StatusBadGateway
	if ae != nil {
		status = ae.Code
	} else {
		c.s.logger.Error("console page failed", "path", c.r.URL.Path, "err", err)
	}
	c.render(w, status, "error", pageData{Title: title, Active: active, Error: errorText(err)})
}

// storeFailed answers a request the store failed.
func (s *server) storeFailed(w http.ResponseWriter, r *http.Request, what string, err error) {
	s.logger.Warn("console: store failed", "what", what, "err", err)
	w.Header().Set("Retry-After", "5")
	s.render(w, http.StatusServiceUnavailable, "error", pageData{Title: "Unavailable",
		Error: fmt.Sprintf("The hub could not %s: its database is unavailable just now. Try again in a moment.", what)})
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
