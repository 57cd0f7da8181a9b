// Package ent holds Gatehouse's ent schemas (in ./schema) and the code ent
// generates from them. Regenerate with `go generate ./ent`; never edit the
// generated files by hand.
//
// Features: privacy and entql carry the tenancy rules (internal/tenancy),
// sql/upsert the webhook appliers' ON CONFLICT inserts, sql/lock their row
// locks. sql/modifier and sql/execquery are deliberately off: a modifier on
// an UPDATE (or a raw query) runs past the privacy policy, so it could move a
// row to another tenant.
package ent

//go:generate go tool ent generate --feature privacy,entql,sql/upsert,sql/lock ./schema
