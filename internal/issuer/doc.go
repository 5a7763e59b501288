// Package issuer is the hub's embedded OIDC provider: it signs in the users
// and service principals of the hub's own directory (package store) and
// issues the tokens the hub then verifies like any other issuer's
// (package identity, with the keys of PublicKeys).
//
//	tether login (CLI) ──device code / auth code + PKCE──► <URL>/devicecode, /token
//	    │                                                      ▲
//	    └── prints URL + code; the person's browser ──────► <URL>/device, /authorize
//	                                                           │ login name + password
//	service principal ──client_credentials (secret)──► <URL>/token
//	                                                           │
//	                        hub store: users, service principals, groups,
//	                                   sign-ins in progress (all replicas)
//	kubectl ──access token──► hub gateway (identity.Verifier, keys from PublicKeys)
//
// The endpoints live under the issuer URL's path: the discovery document
// (/.well-known/openid-configuration), the key set (/keys), the token
// endpoint (/token: client_credentials, device_code, authorization_code
// with PKCE S256, refresh_token), the device authorization endpoint
// (/devicecode), and two HTML pages where a person signs in: /device
// (enter the code shown in the terminal) and /authorize (the login page of
// the browser flow, which redirects the CLI only to loopback URIs, RFC
// 8252).
//
// A second public client, the hub's web console (Config.ConsoleClientID),
// may use the authorization code flow with PKCE and refresh tokens, never
// the device flow; its one redirect URI is Config.ConsoleRedirectURI,
// compared exactly. Codes and refresh tokens are bound to the client they
// were issued to: neither client can redeem the other's.
//
// # Tokens
//
// Every token is a compact JWS signed with ES256 by the one P-256 key of
// Config.Key, whose kid is its RFC 7638 thumbprint.
//
//   - The access token (typ "at+jwt", aud Config.Audience) carries Entra's
//     claim names: oid (the object ID, also sub), name, preferred_username
//     (users), idtyp ("user" or "app"), azp (the client) and, for people,
//     scp. It carries no groups: the hub reads a caller's groups from the
//     store at every request, so adding or removing a member takes effect
//     at once, and the token never outgrows a header.
//   - The ID token (typ "JWT", aud the client: Config.CLIClientID or
//     Config.ConsoleClientID), only for people and only when the openid
//     scope was granted, tells the client who signed in.
//   - The refresh token (typ "tether-refresh+jwt", aud <URL>/token) is
//     issued to people only. It is stateless: nothing is stored per token,
//     so several hub replicas sharing a store can each redeem any of them.
//     Revocation works through its pwd claim, a short hash of the user's
//     stored password hash: setting or removing the password ends every
//     session, and deleting the user ends them too. Each refresh returns a
//     new refresh token valid for RefreshTokenTTL from then; the old one
//     stays valid until it expires (there is no state to mark it used).
//
// # State
//
// The issuer holds no state in memory: the sign-ins in progress are
// ephemeral records of the store (Config.Store), so that hub replicas
// sharing one store (PostgreSQL) behind one name serve as one. A device
// code may be issued by one replica, approved on a second one's page and
// polled on a third. The records, by kind:
//
//   - device-code: a pending device authorization (its scopes, poll
//     interval and last poll, the decision and who approved), kept 10
//     minutes past its expiry so that late polls get expired_token;
//   - user-code: the device code a user code stands for;
//   - auth-code: an unredeemed authorization code's request and sign-in;
//   - lockout-login, lockout-addr: the failed attempts of a login name
//     and of a client address, forgotten an hour after the last one.
//
// Every record is keyed by the SHA-256 (base64url) of its code, login
// name or address: the store never holds a code, nor a typed login name.
// Its value is JSON. Changes (a poll, an approval, a counted attempt) are
// compare-and-swap on the record's version, retried a few times when
// another request changed it first; a redemption is an atomic take, so
// of concurrent redemptions of one code, on any replicas, exactly one
// succeeds. Pending device codes, and separately unredeemed authorization
// codes, are bounded (10,000 each across the replicas; counted before
// adding, so concurrent additions may pass the bound by a few). Each
// issuer purges the expired records from a POST request at most once a
// minute.
//
// When the store cannot be reached (store.ErrUnavailable), the token and
// device authorization endpoints answer 503 temporarily_unavailable with
// Retry-After, and the pages a 503 page asking to try again in a moment;
// a code is not used up by a request that failed so. Other store failures
// are answered 500 and logged.
//
// # Brute force
//
// Failed passwords are counted per login name, by every replica alike:
// after five the
// name is locked out for 1 s, doubling with each further failure up to 15
// minutes; a success resets it. Wrong user codes on the device page are
// counted the same way per client address (an IPv6 client by its /64). A
// locked-out attempt is answered 429 without checking anything. Client
// secrets are 256-bit random values and are not rate limited.
//
// Secrets, passwords, codes and tokens are never logged.
package issuer
