package credentials

import (
	"encoding/json"
	"fmt"
	"time"

	"golang.org/x/oauth2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientauthv1 "k8s.io/client-go/pkg/apis/clientauthentication/v1"
)

// Token is what the cache holds and Source.Get returns.
type Token struct {
	AccessToken  string    `json:"access_token"`
	TokenType    string    `json:"token_type,omitempty"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	IDToken      string    `json:"id_token,omitempty"`
	Expiry       time.Time `json:"expiry"` // of the access token; zero means unknown
}

// String redacts the token, so that printing a Token by mistake leaks
// nothing.
func (t Token) String() string {
	return fmt.Sprintf("Token{expiry: %s, refresh token: %t, id token: %t}",
		t.Expiry.Format(time.RFC3339), t.RefreshToken != "", t.IDToken != "")
}

// GoString redacts the token for %#v as well.
func (t Token) GoString() string { return t.String() }

// validAt reports whether t can be used at now for at least skew more.
// A token without an expiry is treated as expired: Tether's issuers always
// say when their tokens expire.
func (t Token) validAt(now time.Time, skew time.Duration) bool {
	return t.AccessToken != "" && !t.Expiry.IsZero() && now.Add(skew).Before(t.Expiry)
}

// Present selects which of the tokens is sent to the hub as the bearer
// token.
type Present int

const (
	// PresentAccessToken sends the access token, whose audience is the hub.
	// It is the default and the right choice for Entra ID and the embedded
	// issuer.
	PresentAccessToken Present = iota
	// PresentIDToken sends the ID token, whose audience is the CLI's client
	// ID; only for issuers without JWT access tokens.
	PresentIDToken
)

// Bearer returns the token to present to the hub.
func (t Token) Bearer(p Present) (string, error) {
	switch p {
	case PresentAccessToken:
		if t.AccessToken == "" {
			return "", fmt.Errorf("the issuer returned no access token")
		}
		return t.AccessToken, nil
	case PresentIDToken:
		if t.IDToken == "" {
			return "", fmt.Errorf("the issuer returned no ID token (was the openid scope requested?)")
		}
		return t.IDToken, nil
	}
	return "", fmt.Errorf("unknown token choice %d", p)
}

// fromOAuth2 converts a flow's result, keeping the raw id_token.
func fromOAuth2(t *oauth2.Token) Token {
	id, _ := t.Extra("id_token").(string)
	return Token{
		AccessToken:  t.AccessToken,
		TokenType:    t.TokenType,
		RefreshToken: t.RefreshToken,
		IDToken:      id,
		Expiry:       t.Expiry,
	}
}

// ExecCredential returns the client.authentication.k8s.io/v1 ExecCredential
// JSON that an exec credential plugin prints on stdout: token as
// status.token, expiry (if not zero) as status.expirationTimestamp, after
// which client-go runs the plugin again.
func ExecCredential(token string, expiry time.Time) ([]byte, error) {
	if token == "" {
		return nil, fmt.Errorf("exec credential: empty token")
	}
	ec := clientauthv1.ExecCredential{
		TypeMeta: metav1.TypeMeta{
			APIVersion: clientauthv1.SchemeGroupVersion.String(),
			Kind:       "ExecCredential",
		},
		Status: &clientauthv1.ExecCredentialStatus{Token: token},
	}
	if !expiry.IsZero() {
		ts := metav1.NewTime(expiry.UTC())
		ec.Status.ExpirationTimestamp = &ts
	}
	b, err := json.Marshal(ec)
	if err != nil {
		return nil, fmt.Errorf("exec credential: %w", err)
	}
	return b, nil
}
