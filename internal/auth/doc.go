// Package auth turns the credential on a gRPC call into a viewer.Principal and
// decides whether that principal may call the method.
//
// Three pieces, wired together by an Authenticator:
//
//   - SessionVerifier verifies Clerk session tokens (RS256 JWTs) with
//     clerk-sdk-go, then makes the checks the SDK alone does not: an exact
//     issuer, a session id, no pending session, a session category, an
//     allowed authorized party, a required expiry, a user subject. Verified
//     tokens are cached until they expire, so a warm call costs a map lookup.
//   - MachineVerifier verifies Clerk machine (M2M) tokens through the Backend
//     API, caching the answer briefly, and places the machine in the tenant
//     it names in the x-gatehouse-tenant metadata.
//   - Rules holds the (gatehouse.v1.access) option of every RPC, read from the
//     service descriptors; a Gatehouse RPC without one refuses to load.
//
// The Authenticator's AuthFunc is go-grpc-middleware v2's auth.AuthFunc, a
// function from context to context storing the principal with
// viewer.NewContext; that package's interceptors run it on every call. Every
// failure is an *Error whose Reason is safe to show and to use as a metric
// label; no error, log or metric ever carries token text.
package auth
