// Package credentials is the client side of Tether's identity: it signs a
// person or a service principal in at an OIDC issuer, keeps the tokens in a
// per-user cache, refreshes them, and turns them into the ExecCredential
// that `tether get-token` hands to kubectl.
//
//	tether login / get-token (CLI)
//	    │
//	    ▼
//	Source.Get ── cache hit, not near expiry ──────────────────► Token
//	    │ otherwise: flock(cache entry), re-read (another process may
//	    │ just have refreshed), then the first that applies:
//	    ├─ refresh token      ──► token endpoint (refresh_token grant)
//	    ├─ secret supplied    ──► token endpoint (client_credentials)
//	    ├─ interactive        ──► device code  (prints URI + user code)
//	    │                         or auth code + PKCE on 127.0.0.1:PORT/callback
//	    └─ else               ──► ErrLoginRequired ("run tether login")
//
// Flows are Client methods and return *oauth2.Token with the raw id_token
// kept as an extra. Discover reads the issuer's discovery document.
//
// # Which token goes to the hub
//
// The hub is a resource server: it accepts the access token, a JWT whose
// audience is the hub (Config.Audience, sent as the RFC 8707 resource
// parameter). The ID token's audience is the client ID of the CLI, so it
// tells the CLI who signed in but is not meant to be presented to an API
// (OIDC Core 3.1.3.7 has the relying party, not a third party, validate it).
// Config.Present can select the ID token for issuers that issue opaque access
// tokens and hubs configured to accept the CLI's client ID as audience.
//
// # Secrets
//
// Client secrets are never written to the cache. A service principal's
// cached access token is used until it expires; after that Get needs the
// secret again (Config.ClientSecret) and says so.
//
// Tokens are never logged or printed; Token's String method redacts them.
package credentials
