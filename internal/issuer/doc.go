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
//	                        hub store: users, service principals, groups
//	kubectl ──access token──► hub gateway (identity.Verifier, keys from PublicKeys)
//
// The endpoints live under the issuer URL's path: the discovery document
// (/.well-known/openid-configuration), the key set (/keys), the token
// endpoint (/token: client_credentials, device_code, authorization_code
// with PKCE S256, refresh_token), the device authorization endpoint
// (/devicecode), and two HTML pages where a person signs in: /device
// (enter the code shown in the terminal) and /authorize (the login page of
// the browser flow, which redirects only to loopback URIs, RFC 8252).
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
//   - The ID token (typ "JWT", aud Config.CLIClientID), only for people and
//     only when the openid scope was granted, tells the CLI who signed in.
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
// Pending device codes and authorization codes live in memory, bounded
// (10,000 each) and swept of expired entries as they are used. A hub
// with several replicas behind one name will need them in the store
// instead, since the poll or redemption may reach another replica than
// the one that issued the code. The sign-in lock-outs are in memory too,
// per replica.
//
// # Brute force
//
// Failed passwords are counted per login name: after five the
// name is locked out for 1 s, doubling with each further failure up to 15
// minutes; a success resets it. Wrong user codes on the device page are
// counted the same way per client address (an IPv6 client by its /64). A
// locked-out attempt is answered 429 without checking anything. Client
// secrets are 256-bit random values and are not rate limited.
//
// Secrets, passwords, codes and tokens are never logged.
package issuer
