// Package webhook receives Clerk's webhooks, delivered through Svix, and
// applies them to Gatehouse's local mirror of users, organizations and
// memberships.
//
// A Receiver serves POST /webhooks/clerk. Every delivery goes through the
// same steps:
//
//  1. The body (at most 1 MiB, else 413) is verified with Svix's own
//     verifier on the raw bytes, before anything parses it: a missing
//     header, a bad signature, or a timestamp more than 5 minutes off is
//     401 and nothing is written.
//  2. The Clerk event envelope is decoded (DecodeEvent); a validly signed
//     but malformed payload is 400 and nothing is written.
//  3. The event's effect and a WebhookEvent row keyed by the svix-id are
//     written in one transaction. Whichever delivery commits that row
//     first has the effect; every other delivery of the same svix-id, on
//     this replica or another, finds it and answers 200 "duplicate"
//     having changed nothing. A database outage is 503 (any other
//     failure 500) with nothing half-written, so Svix's retry applies the
//     event in full.
//
// The appliers make the mirror converge whatever order the events arrive
// in. Each user, organization and membership row keeps Clerk's updated_at
// (clerk_updated_at): an event no newer than the stored one is "stale" and
// changes nothing, except that rows created from a token or a membership
// (clerk_updated_at 0) always yield to a real event. Deletes leave
// tombstones (deleted_at) that no later event resurrects. user.deleted
// clears the user's personal data, deletes the projects of their personal
// tenant and ends their memberships; organization.deleted deletes the
// organization's projects and ends its memberships. Event types Gatehouse
// does not handle are recorded as "ignored" and answered 200, whatever their
// data holds.
//
// Personal data in the record of events: the raw payload of a handled event
// is kept beside its svix-id for audit, with the user whose data it holds
// (a user.* event's user, a membership's member); an unhandled type's is
// not kept at all, since Gatehouse cannot tell whose data it holds.
// user.deleted drops, in its own transaction, the payload of every event
// about the user (their user.* events and the memberships'
// public_user_data), keeping the rows, so redeliveries stay duplicates; an
// event about the user that arrives later keeps no payload either.
// Receiver.Sweep purges every record after the retention
// (GATEHOUSE_WEBHOOK_RETENTION, default 7 days).
//
// Per row, the appliers take the row lock (SELECT … FOR UPDATE, or FOR
// SHARE for the organization and user a membership refers to) before
// deciding, so that concurrent deliveries for the same object serialize on
// Postgres; SQLite transactions are serialized by the store.
//
// Sample events for a Receiver, in Clerk's JSON shapes and signed as Svix
// signs, come from the emulator (internal/clerkemu).
package webhook
