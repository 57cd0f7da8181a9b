package httpapi

import (
	"net/http"

	connectcors "connectrpc.com/cors"
	"github.com/rs/cors"
)

// CORS returns middleware that lets browsers on origins call the wrapped
// handler cross-origin: preflights allow the methods of the Connect,
// gRPC-Web and REST routes and the headers those protocols send, plus
// Authorization and x-gatehouse-tenant; responses expose the gRPC status
// headers. With no origins it adds nothing at all (rs/cors would otherwise
// allow every origin), so browsers refuse cross-origin calls. No cookies are
// involved: the credential is a bearer token, so credentials stay disallowed.
func CORS(origins []string) func(http.Handler) http.Handler {
	if len(origins) == 0 {
		return func(h http.Handler) http.Handler { return h }
	}
	c := cors.New(cors.Options{
		AllowedOrigins: origins,
		// GET and POST for Connect and gRPC-Web, PATCH and DELETE for REST.
		AllowedMethods: append(connectcors.AllowedMethods(), http.MethodPatch, http.MethodDelete),
		AllowedHeaders: append(connectcors.AllowedHeaders(), "Authorization", "X-Gatehouse-Tenant"),
		ExposedHeaders: connectcors.ExposedHeaders(),
		// Chromium caps a cached preflight at 2 h.
		MaxAge: 7200,
	})
	return c.Handler
}
