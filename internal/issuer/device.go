package issuer

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// userCodeAlphabet is RFC 8628 6.1's: consonants only, so no word is
// spelled and no letter is confused with a digit.
const userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"

// userCodeLen letters make a user code: 20^8, about 2^34.6, codes.
const userCodeLen = 8

// userCodeDraws bounds the user codes drawn for one device code when the
// ones drawn are taken: with at most maxPending pending, one draw in 2.5
// million is.
const userCodeDraws = 10

// newUserCode draws a user code, normalized (without the dash).
func newUserCode() string {
	const limit = 256 - 256%len(userCodeAlphabet) // unbiased
	b := make([]byte, 0, userCodeLen)
	var buf [16]byte
	for len(b) < userCodeLen {
		rand.Read(buf[:])
		for _, c := range buf {
			if int(c) < limit && len(b) < userCodeLen {
				b = append(b, userCodeAlphabet[int(c)%len(userCodeAlphabet)])
			}
		}
	}
	return string(b)
}

// normalizeUserCode returns the user code a person typed in normal form:
// upper case, without dashes or spaces. It returns "" if the result is
// not a possible user code.
func normalizeUserCode(s string) string {
	if len(s) > 64 {
		return ""
	}
	s = strings.Map(func(r rune) rune {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			return -1
		case 'a' <= r && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
	if len(s) != userCodeLen || strings.ContainsFunc(s, func(r rune) bool { return !strings.ContainsRune(userCodeAlphabet, r) }) {
		return ""
	}
	return s
}

// shownUserCode is what the form shows of a user code someone typed or
// followed a link with: the code in its usual form, or what was typed if
// it is short.
func shownUserCode(s string) string {
	if n := normalizeUserCode(s); n != "" {
		return formatUserCode(n)
	}
	if len(s) > 16 {
		return ""
	}
	return s
}

// formatUserCode shows a normalized user code as XXXX-XXXX.
func formatUserCode(s string) string { return s[:4] + "-" + s[4:] }

// deviceAuthResponse is the device authorization response (RFC 8628 3.2).
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// serveDeviceCode is the device authorization endpoint.
func (i *Issuer) serveDeviceCode(w http.ResponseWriter, r *http.Request) {
	resp, oerr := i.deviceCode(w, r)
	if oerr != nil {
		i.writeOAuthError(w, r, oerr)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (i *Issuer) deviceCode(w http.ResponseWriter, r *http.Request) (deviceAuthResponse, *oauthError) {
	form, oerr := readForm(w, r)
	if oerr != nil {
		return deviceAuthResponse{}, oerr
	}
	if _, oerr := i.cliRequest(r, form, false); oerr != nil {
		return deviceAuthResponse{}, oerr
	}
	scopes, oerr := i.personScopes(form.Get("scope"))
	if oerr != nil {
		return deviceAuthResponse{}, oerr
	}
	now := i.cfg.Now()
	deviceCode := randomString(32)
	g := deviceGrant{Scopes: scopes, Interval: i.cfg.DevicePollInterval, Expires: now.Add(i.cfg.DeviceCodeTTL)}
	var userCode string
	err := errDuplicate
	// Another pending code may have the user code drawn: draw again.
	for n := 0; errors.Is(err, errDuplicate) && n < userCodeDraws; n++ {
		userCode = newUserCode()
		err = i.devices.add(r.Context(), now, deviceCode, userCode, g)
	}
	switch {
	case errors.Is(err, errFull):
		return deviceAuthResponse{}, unavailable(err.Error(), time.Minute, err)
	case err != nil:
		return deviceAuthResponse{}, storeError(fmt.Errorf("new device code: %w", err))
	}
	uc := formatUserCode(userCode)
	verify := i.endpoint(devicePath)
	return deviceAuthResponse{
		DeviceCode:              deviceCode,
		UserCode:                uc,
		VerificationURI:         verify,
		VerificationURIComplete: verify + "?" + url.Values{"user_code": {uc}}.Encode(),
		ExpiresIn:               int64(i.cfg.DeviceCodeTTL / time.Second),
		Interval:                int64((i.cfg.DevicePollInterval + time.Second - 1) / time.Second),
	}, nil
}

// devicePage is the device page as first shown.
func (i *Issuer) devicePage(userCode, login string) page {
	return page{
		Title:   "Sign in to Tether",
		Message: fmt.Sprintf("Enter the code that tether login shows in your terminal, and sign in with your account of the hub at %s.", i.cfg.URL),
		Form: &loginForm{
			Action: i.path + devicePath, AskUserCode: true, UserCode: userCode, Login: login,
			Note: "Only enter a code that you got from a sign-in you started yourself: whoever ran it gets access as you.",
		},
	}
}

// serveDevice is the verification page: a person enters the user code
// and signs in, or denies.
func (i *Issuer) serveDevice(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		writePage(w, http.StatusOK, i.devicePage(shownUserCode(r.URL.Query().Get("user_code")), ""), "")
		return
	}
	if err := readPageForm(w, r); err != nil {
		writePage(w, http.StatusBadRequest, page{Title: "Sign-in failed", Error: "The form could not be read."}, "")
		return
	}
	ctx := r.Context()
	typed, login := r.PostForm.Get("user_code"), r.PostForm.Get("login")
	p := i.devicePage(shownUserCode(typed), login)
	now := i.cfg.Now()
	addr := addressKey(r.RemoteAddr)
	wait, err := i.guesses.attempt(ctx, addr, now)
	switch {
	case err != nil:
		i.storeFailure(r.RemoteAddr, "device code entry failed", err).write(w, p, "")
		return
	case wait > 0:
		i.logger.Info("device code entry locked out", "remote_addr", r.RemoteAddr)
		tooMany("with wrong codes from your address", wait).write(w, p, "")
		return
	}
	code := normalizeUserCode(typed)
	pending := false
	if code != "" {
		if pending, err = i.devices.pending(ctx, now, code); err != nil {
			i.forgive(ctx, i.guesses, addr)
			i.storeFailure(r.RemoteAddr, "device code entry failed", err).write(w, p, "")
			return
		}
	}
	if !pending {
		i.logger.Info("wrong device user code", "remote_addr", r.RemoteAddr)
		(&failure{status: http.StatusBadRequest, msg: "That code is not valid, or has expired or been used. Check it, or start the sign-in again in your terminal."}).write(w, p, "")
		return
	}
	i.forgive(ctx, i.guesses, addr)
	if r.PostForm.Get("action") == "deny" {
		// A code decided or expired meanwhile needs no denial.
		if _, err := i.devices.decide(ctx, now, code, false, person{}); err != nil {
			i.storeFailure(r.RemoteAddr, "device code denial failed", err).write(w, p, "")
			return
		}
		writePage(w, http.StatusOK, page{Title: "Sign-in denied", Message: "You denied the sign-in. The terminal that asked will say so; you can close this window."}, "")
		return
	}
	who, f := i.signIn(ctx, r.RemoteAddr, login, r.PostForm.Get("password"))
	if f != nil {
		f.write(w, p, "")
		return
	}
	approved, err := i.devices.decide(ctx, i.cfg.Now(), code, true, who)
	if err != nil {
		i.storeFailure(r.RemoteAddr, "device code approval failed", err).write(w, p, "")
		return
	}
	if !approved {
		(&failure{status: http.StatusBadRequest, msg: "The code expired or was used while you signed in. Start the sign-in again in your terminal."}).write(w, p, "")
		return
	}
	writePage(w, http.StatusOK, page{Title: "Signed in", Message: fmt.Sprintf("Signed in as %s (%s). Return to your terminal; you can close this window.", who.DisplayName, who.LoginName)}, "")
}
