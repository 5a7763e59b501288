package issuer

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// JWS types (the typ header) of the three tokens.
const (
	typeAccessToken  jose.ContentType = "at+jwt"
	typeIDToken      jose.ContentType = "JWT"
	typeRefreshToken jose.ContentType = "tether-refresh+jwt"
)

// Values of the idtyp claim (Entra's).
const (
	idtypUser = "user"
	idtypApp  = "app"
)

// Scopes people may ask for, besides the audience's own (see scopesSupported).
const (
	scopeOpenID        = "openid"
	scopeProfile       = "profile"
	scopeOfflineAccess = "offline_access"
)

// maxRefreshToken bounds a presented refresh token; ours are far shorter.
const maxRefreshToken = 4096

// person is a user who proved their password, as the tokens name them.
// It is stored (JSON) with a pending device code or authorization code.
type person struct {
	ID          string `json:"id"`
	DisplayName string `json:"name"`
	LoginName   string `json:"login"`
	// Pwd is pwdHash of the stored password hash at sign-in.
	Pwd string `json:"pwd"`
	// AuthTime is when the person typed the password.
	AuthTime time.Time `json:"auth_time"`
}

// pwdHash is the refresh token's pwd claim: base64url of the first 12
// bytes of SHA-256 of the stored password hash. It changes whenever the
// password does.
func pwdHash(passwordHash []byte) string {
	h := sha256.Sum256(passwordHash)
	return base64.RawURLEncoding.EncodeToString(h[:12])
}

// identityClaims are the claims of access and ID tokens.
type identityClaims struct {
	Issuer            string `json:"iss"`
	Subject           string `json:"sub"`
	Audience          string `json:"aud"`
	AuthorizedParty   string `json:"azp"`
	IssuedAt          int64  `json:"iat"`
	NotBefore         int64  `json:"nbf"`
	Expiry            int64  `json:"exp"`
	ID                string `json:"jti"`
	ObjectID          string `json:"oid"`
	Name              string `json:"name,omitempty"`
	PreferredUsername string `json:"preferred_username,omitempty"`
	IdentityType      string `json:"idtyp"`
	Scope             string `json:"scp,omitempty"`
	Nonce             string `json:"nonce,omitempty"`
	AuthTime          int64  `json:"auth_time,omitempty"`
}

// refreshClaims are the claims of a refresh token.
type refreshClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	IssuedAt int64  `json:"iat"`
	Expiry   int64  `json:"exp"`
	ID       string `json:"jti"`
	Pwd      string `json:"pwd"`
	AuthTime int64  `json:"auth_time"`
}

// tokenResponse is the token endpoint's answer (RFC 6749 5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
}

// randomString is n random bytes, base64url.
func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func sign(s jose.Signer, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return jws.CompactSerialize()
}

// accessClaims are the access token's claims for a principal, from now.
func (i *Issuer) accessClaims(now time.Time, id, clientID string) identityClaims {
	return identityClaims{
		Issuer:          i.cfg.URL,
		Subject:         id,
		Audience:        i.cfg.Audience,
		AuthorizedParty: clientID,
		IssuedAt:        now.Unix(),
		NotBefore:       now.Unix(),
		Expiry:          now.Add(i.cfg.AccessTokenTTL).Unix(),
		ID:              randomString(16),
		ObjectID:        id,
	}
}

// appTokens issues a service principal's access token.
func (i *Issuer) appTokens(now time.Time, id, name, clientID string) (tokenResponse, error) {
	c := i.accessClaims(now, id, clientID)
	c.Name, c.IdentityType = name, idtypApp
	at, err := sign(i.accessSigner, c)
	if err != nil {
		return tokenResponse{}, err
	}
	return tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(i.cfg.AccessTokenTTL / time.Second)}, nil
}

// personTokens issues a person's access token, refresh token and, with
// the openid scope, ID token (carrying nonce if not empty), to clientID:
// the access token's azp, the ID token's aud, the refresh token's client.
func (i *Issuer) personTokens(now time.Time, clientID string, p person, scopes []string, nonce string) (tokenResponse, error) {
	scope := strings.Join(scopes, " ")
	c := i.accessClaims(now, p.ID, clientID)
	c.Name, c.PreferredUsername, c.IdentityType, c.Scope = p.DisplayName, p.LoginName, idtypUser, scope
	at, err := sign(i.accessSigner, c)
	if err != nil {
		return tokenResponse{}, err
	}
	resp := tokenResponse{AccessToken: at, TokenType: "Bearer", ExpiresIn: int64(i.cfg.AccessTokenTTL / time.Second), Scope: scope}
	if slices.Contains(scopes, scopeOpenID) {
		idc := c
		idc.Audience, idc.ID, idc.Scope, idc.Nonce, idc.AuthTime = clientID, randomString(16), "", nonce, p.AuthTime.Unix()
		if resp.IDToken, err = sign(i.idSigner, idc); err != nil {
			return tokenResponse{}, err
		}
	}
	rc := refreshClaims{
		Issuer:   i.cfg.URL,
		Subject:  p.ID,
		Audience: i.endpoint(tokenPath),
		ClientID: clientID,
		Scope:    scope,
		IssuedAt: now.Unix(),
		Expiry:   now.Add(i.cfg.RefreshTokenTTL).Unix(),
		ID:       randomString(16),
		Pwd:      p.Pwd,
		AuthTime: p.AuthTime.Unix(),
	}
	if resp.RefreshToken, err = sign(i.refreshSigner, rc); err != nil {
		return tokenResponse{}, err
	}
	return resp, nil
}

// parseRefreshToken verifies a refresh token's signature, type, issuer,
// audience and expiry. The error says why it is refused.
func (i *Issuer) parseRefreshToken(raw string, now time.Time) (refreshClaims, error) {
	if len(raw) > maxRefreshToken {
		return refreshClaims{}, errors.New("the refresh token is too long to be one of this issuer's")
	}
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return refreshClaims{}, errors.New("the refresh token is not a signed token of this issuer")
	}
	if len(jws.Signatures) != 1 {
		return refreshClaims{}, errors.New("the refresh token does not have exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != string(typeRefreshToken) {
		return refreshClaims{}, fmt.Errorf("the token is of type %q, not a refresh token", typ)
	}
	payload, err := jws.Verify(&i.cfg.Key.PublicKey)
	if err != nil || h.KeyID != i.kid {
		return refreshClaims{}, errors.New("the refresh token's signature is not this issuer's")
	}
	var c refreshClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return refreshClaims{}, errors.New("the refresh token's claims are malformed")
	}
	switch {
	case c.Issuer != i.cfg.URL:
		return refreshClaims{}, errors.New("the refresh token is of another issuer")
	case c.Audience != i.endpoint(tokenPath):
		return refreshClaims{}, errors.New("the token is not a refresh token of this issuer (wrong audience)")
	case c.Subject == "" || c.ClientID == "" || c.Pwd == "":
		return refreshClaims{}, errors.New("the refresh token lacks claims")
	case !now.Before(time.Unix(c.Expiry, 0)):
		return refreshClaims{}, fmt.Errorf("the refresh token expired at %s", time.Unix(c.Expiry, 0).UTC().Format(time.RFC3339))
	}
	return c, nil
}

// pwdMatches compares a refresh token's pwd claim with the stored hash.
func pwdMatches(claim string, passwordHash []byte) bool {
	return len(passwordHash) > 0 && subtle.ConstantTimeCompare([]byte(claim), []byte(pwdHash(passwordHash))) == 1
}
