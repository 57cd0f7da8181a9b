// Package ent holds Gatehouse's ent schemas (in ./schema) and the code ent
// generates from them. Regenerate with `go generate ./ent`; never edit the
// generated files by hand.
package ent

//go:generate go tool ent generate --feature privacy,entql,sql/upsert,sql/lock,sql/execquery,sql/modifier ./schema
