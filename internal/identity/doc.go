// Package identity says who a caller is, on both sides of the tunnel.
//
//	caller --(OIDC token)--> hub: Verifier.Verify --> Principal
//	                          hub: AssertionSigner.Sign(Assertion) --(Tether-Assertion, over the tunnel)-->
//	                                                        agent: AssertionVerifier.Verify --> impersonate
//
// On the hub, a Verifier checks callers' bearer tokens against any number
// of OIDC issuers (discovery and signatures through coreos/go-oidc), with
// Entra-compatible claim mapping: the object ID (oid) is the user name the
// API server sees, groups come inline or, past Entra's 200-group token
// limit, from the overage source the token names, resolved by a
// GroupSource the hub provides. There is no group limit below MaxGroups.
//
// The hub then tells the agent who the caller is with an Assertion: a JWS
// signed with the hub's Ed25519 key, for one cluster, living seconds. The
// agent verifies it with the hub key it learned at enrollment and never
// trusts a plain header.
//
// Nobody is ever mapped onto Kubernetes' system: users or groups: a token
// or assertion naming one is refused, on both sides.
//
// The package has no store, server or CLI code, so the agent can import
// it; the agent needs only the assertion half.
package identity
