// Package loadtest measures Gatehouse side by side with what users would
// run instead. It is the logic behind cmd/gatehouse-bench:
//
//   - Run, a closed-loop load driver: a fixed number of workers for a warm-up
//     and then a fixed measured window (or a fixed count), reporting RPS,
//     latency percentiles, errors by kind and — given a server's PID — the
//     server's CPU time per request and peak RSS read from /proc.
//   - The gRPC scenarios (health Check, GetMe, ListProjects, CreateProject)
//     and the HTTP scenario against the peer.
//   - Peer, the way Clerk documents Go today: net/http behind clerk-sdk-go
//     v2's WithHeaderAuthorization middleware, doing GetMe's lookup through
//     the same ent store, and machine tokens verified with the SDK's
//     m2m_token.Verify on every request.
//   - KidFlood, forged key ids against Gatehouse and the peer, counting the
//     JWKS fetches each causes at an in-process Clerk emulator.
//   - Flood, invented opaque credentials (mt_, ak_, oat_) against Gatehouse
//     and the peer, counting the Backend API verify calls each causes, and
//     measuring callers already verified beside the flood and without it.
//   - Webhooks, ingest: distinct signed events, then redeliveries of the
//     same svix-ids.
//   - Profile, a CPU profile of one scenario against an in-process Gatehouse
//     and peer, to see where the time goes.
//
// Load runs only against loopback addresses and always stops by itself
// (fixed duration or count, with a per-request timeout). docs/BENCHMARKS.md
// has the commands and the figures.
package loadtest
