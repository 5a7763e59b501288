// Package oidcprovider runs a real OpenID Connect provider for Tether's tests:
// server.js in this directory, built on the OpenID Certified oidc-provider
// package for Node.js, serving HTTPS with a certificate from a CA the harness
// makes. It stands in for Entra ID as the external issuer: users sign in with
// a username and password on its HTML pages, every token is a JWT with
// Entra-style claims, and a principal in more groups than the overage
// threshold gets Entra's group-overage pointers instead of a groups claim.
//
//	test (Go) ── Start ──► npm ci (once; cached by lockfile hash)
//	    │                  node server.js config.json ── prints "ready <issuer>"
//	    │
//	    ├─ DeviceLogin, PasswordLogin: HTTP client with a cookie jar plays the
//	    │  browser on /device and /interaction/{uid} (the real interaction flow)
//	    ├─ UserToken, ClientCredentialsToken, PollDeviceToken: /token
//	    └─ the hub under test: discovery, /jwks, and for overage
//	       POST /groups/{oid}/getMemberObjects with the user's access token
//
// # Tokens
//
// The harness makes the signing keys (one RSA key for RS256, one P-256 key
// for ES256) and the TLS certificate anew for every Start. ID tokens are
// signed with the client's IDTokenSigningAlg (RS256 by default, or ES256)
// and have no typ header; access tokens are RFC 9068 JWTs (typ "at+jwt")
// for one Resource (RFC 8707 resource indicator; the first one configured is
// used when a request names none), signed with its SigningAlg. Both verify
// against the keys at the jwks_uri of the discovery document. The claims,
// as Entra ID issues them:
//
//	oid                 the principal's object ID (a UUID): User.ObjectID, or
//	                    for client credentials the Client.ObjectID
//	sub                 ID tokens and user access tokens: the user's object ID;
//	                    client-credentials tokens: the client ID
//	tid                 Config.TenantID
//	name                User.Name
//	preferred_username  User.Username
//	groups              the group object IDs, when there are 1 to
//	                    GroupOverageThreshold of them (absent when none)
//	_claim_names        {"groups": "src1"} instead of groups above the threshold
//	_claim_sources      {"src1": {"endpoint": "<issuer>/groups/<oid>/getMemberObjects"}}
//	idtyp               access tokens: "user", or "app" for client credentials
//	azp, client_id      access tokens: the client the token was issued to
//	app_displayname     client-credentials tokens: Client.Name
//
// plus User.Claims. ID tokens carry the user's claims whenever the openid
// scope is granted (as Entra ID does, unlike OIDC's default of moving them
// to the userinfo endpoint). A client allowed the refresh_token grant gets a
// refresh token from the code and device-code grants without asking for
// offline_access.
//
// # Groups endpoint
//
// POST (GET also works) <issuer>/groups/{oid}/getMemberObjects with
// "Authorization: Bearer <access token>" answers
//
//	{"@odata.context": "...", "value": ["<group id>", ...], "@odata.nextLink": "<url>"}
//
// with at most GroupsPageSize IDs; @odata.nextLink (absent on the last page)
// is the same URL with $skiptoken, to be requested the same way with the same
// token. The token must be an access token (typ at+jwt) this provider signed,
// unexpired, whose oid is {oid}: the user's own token, or a service
// principal's client-credentials token for its own groups. A missing,
// forged, expired or ID token gets 401 with WWW-Authenticate: Bearer
// error="invalid_token"; a valid token of another principal gets 403.
//
// # Driving the flows from a test
//
// All pages are plain HTML forms, so a Go HTTP client with a cookie jar that
// follows redirects drives them exactly as a browser would; the helpers here
// do so, and each step is:
//
// Device code (RFC 8628). The client (say `tether login --device`) POSTs to
// <issuer>/device/auth and shows verification_uri and user_code.
// DeviceLogin(ctx, DeviceAuthorization{VerificationURI, UserCode}, user,
// password) then:
//
//  1. GET verification_uri (<issuer>/device): form id "op.deviceInputForm"
//     (hidden xsrf, text user_code); POST it with user_code.
//  2. The answer is form id "op.deviceConfirmForm" (hidden xsrf, user_code,
//     confirm=yes); POST it. (A wrong code re-renders step 1 with an element
//     id "error".)
//  3. Redirects lead to <issuer>/interaction/{uid}: form id "login"
//     (username, password), POST to /interaction/{uid}/login. A wrong
//     password answers 401 with the form again and an element id "error".
//  4. Redirects lead back to /interaction/{uid}: form id "consent" (no
//     fields), POST to /interaction/{uid}/consent.
//  5. Redirects end on a page with an element id "success". The client's
//     polling of /token now gets the tokens (the device authorization
//     response says interval = Config.DevicePollInterval).
//
// Every interaction page also has form id "abort" (POST
// /interaction/{uid}/abort), which ends the flow with access_denied.
//
// Authorization code with PKCE on a loopback redirect (RFC 8252). The client
// (say `tether login`) listens on http://127.0.0.1:PORT/callback and sends
// the browser to its authorization URL, <issuer>/auth?response_type=code&
// client_id=..&redirect_uri=..&scope=openid..&code_challenge=..&
// code_challenge_method=S256&state=..[&resource=..]. Public clients are
// registered as native applications, so a redirect URI registered as
// http://127.0.0.1/callback matches any port. PasswordLogin(ctx, authURL,
// user, password) then:
//
//  1. GET the authorization URL; redirects lead to /interaction/{uid}.
//  2. Form "login" as in step 3 above, then form "consent" as in step 4.
//  3. The provider redirects to redirect_uri?code=..&state=..&iss=..;
//     PasswordLogin returns that URL without following it. A test that plays
//     the whole browser GETs it, which hands the code to the client's
//     loopback listener; UserToken instead redeems the code itself at
//     /token with the PKCE verifier.
//
// Authorization code for a web application, such as the hub's web console:
// register a Client with GrantTypes authorization code (and refresh token)
// and RedirectURIs the application's https callback, whose host and port the
// test knows only once the application listens (say
// https://HOST:PORT/console/auth/callback). With a Secret it is confidential
// and redeems its codes with client_secret_basic; without, it is public (PKCE
// alone) and, all its redirect URIs being https, registered as a web
// application, since oidc-provider refuses https redirect URIs on 127.0.0.1
// for native ones. A browser then plays the pages above (form "login", form
// "consent"); AuthCodeToken with ClientID, ClientSecret and RedirectURI
// plays them without one. An application that sends no resource parameter,
// as the console does, gets access tokens for the first Resource.
//
// Client credentials: POST <issuer>/token with HTTP Basic client
// authentication, grant_type=client_credentials and optionally resource
// (ClientCredentialsToken).
//
// # Installing
//
// Start runs `npm ci` in this directory the first time (Node.js >= 20 and npm
// on PATH, the npm registry reachable), and again only when package.json or
// package-lock.json change: it records their hash in node_modules after a
// successful install, and holds a file lock meanwhile so that concurrent
// test binaries install once. oidc-provider 9 prints a warning that it
// prefers Node.js 22 or later; it works on Node.js 20.
package oidcprovider
