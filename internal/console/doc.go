// Package console is the hub's web console: server-rendered HTML pages
// under /console/ where people sign in with the hub's identities and see
// the clusters, role assignments and audit trail they may see, and
// connect new clusters.
//
//	browser ──HTTPS /console/...──► hub ──► console (this package)
//	   │  cookie __Host-tether-console        │ session record in the store
//	   │                                      │ (tokens sealed with a key
//	   │                                      │  derived from the cookie)
//	   │                                      ▼
//	   │                      hub JSON API, called in process with the
//	   │                      session's access token (Authorization: Bearer):
//	   │                      the hub's own authorization decides, and its
//	   │                      audit trail records the change as the person
//	   └──sign-in──► issuer /authorize (embedded, or an external OIDC issuer)
//	                 ──code──► /console/auth/callback ──PKCE, nonce──► token
//
// The console has no authorization of its own: every page is built from
// what the API answers the signed-in person, and every change is an API
// request made as that person. See docs/console.md for the design and its
// reasons (plain HTML, no build step, a strict Content-Security-Policy).
package console
