// Package auth turns the credential on a gRPC call into a viewer.Principal and
// decides whether that principal may call the method.
//
// Clerk issues four kinds of credential, and Gatehouse takes each where the
// RPC's access rule lists it. The Authenticator routes a credential to the
// one verifier of its kind, never trying one after another: opaque ones by
// prefix (mt_, ak_, oat_), JWTs by header and claims (typ at+jwt is OAuth, a
// sub starting mch_ a machine, anything else a session, held to everything
// a session must be). The pieces:
//
//   - SessionVerifier verifies Clerk session tokens (RS256 JWTs) with
//     clerk-sdk-go, then makes the checks the SDK alone does not: an exact
//     issuer, a session id, no pending session, a session category, an
//     allowed authorized party, a required expiry, a user subject. Verified
//     tokens are cached until they expire, so a warm call costs a map lookup.
//   - MachineJWTVerifier verifies machine (M2M) and OAuth access tokens in
//     JWT form the same way, networkless, with the same keys.
//   - OpaqueVerifier verifies opaque machine tokens, API keys and OAuth
//     tokens through Clerk's Backend API, behind a shape check, a cache of
//     answers (30 s at most, counted from the request) and of refusals, one
//     request per credential in flight, a token bucket per caller address
//     and a bound on requests in flight: no stream of invented credentials
//     can spend the Clerk instance's Backend API rate limit.
//   - Rules holds the (gatehouse.v1.access) option of every RPC, read from the
//     service descriptors: its permissions, the kinds of credential it takes,
//     whether it needs a user. A Gatehouse RPC without one refuses to load.
//
// What a verified credential other than a session may do is decided on
// every call: the tenant it acts in (x-gatehouse-tenant for machines, and
// for a user's key or OAuth token the user's personal tenant or an
// organization they are a mirrored member of) and the permissions its
// scopes name there, capped by its subject's own.
//
// The Authenticator's AuthFunc is go-grpc-middleware v2's auth.AuthFunc, a
// function from context to context storing the principal with
// viewer.NewContext; that package's interceptors run it on every call. Every
// failure is an *Error, chosen in one table (errorOf), whose Reason is safe
// to show and to use as a metric label; no error, log or metric ever carries
// token text. Failures hidden from the caller (INTERNAL, UNAVAILABLE,
// RESOURCE_EXHAUSTED) are logged once with their cause (Error.HiddenCause,
// on the call's log line).
package auth
