package clerkemu

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	clerksdk "github.com/clerk/clerk-sdk-go/v2"
	"github.com/go-jose/go-jose/v3"
)

// Handler serves the emulated Backend API under /v1:
//
//	GET  /v1/jwks
//	GET  /v1/users/{id}
//	POST /v1/m2m_tokens                              (create; "token_format": "jwt" too)
//	POST /v1/m2m_tokens/verify
//	POST /v1/api_keys                                (create)
//	POST /v1/api_keys/verify
//	POST /v1/oauth_applications/access_tokens/verify
//	POST /v1/emulator/oauth_access_tokens            (the emulator's own: mint an OAuth token)
//
// Every request needs "Authorization: Bearer <SecretKey>"; otherwise the
// answer is 401 with a Clerk error body.
func (e *Emulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/jwks", e.serveJWKS)
	mux.HandleFunc("GET /v1/users/{id}", e.serveUser)
	mux.HandleFunc("POST /v1/m2m_tokens", e.serveCreateMachineToken)
	mux.HandleFunc("POST /v1/m2m_tokens/verify", e.serveVerifyMachineToken)
	mux.HandleFunc("POST /v1/api_keys", e.serveCreateAPIKey)
	mux.HandleFunc("POST /v1/api_keys/verify", e.serveVerifyAPIKey)
	mux.HandleFunc("POST /v1/oauth_applications/access_tokens/verify", e.serveVerifyOAuthToken)
	mux.HandleFunc("POST /v1/emulator/oauth_access_tokens", e.serveMintOAuthToken)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "resource_not_found", "not found", "The requested resource was not found.")
	})
	return e.requireSecret(mux)
}

func (e *Emulator) requireSecret(next http.Handler) http.Handler {
	want := []byte("Bearer " + e.secretKey)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			writeError(w, http.StatusUnauthorized, "authentication_invalid", "Unauthorized request",
				"The provided Clerk Secret Key is invalid. Make sure that your Clerk Secret Key is correct.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (e *Emulator) serveJWKS(w http.ResponseWriter, r *http.Request) {
	e.jwksFetches.Add(1)
	e.mu.Lock()
	delay, status := e.jwksDelay, e.jwksStatus
	keys := make([]jose.JSONWebKey, len(e.keys))
	for i, k := range e.keys {
		keys[i] = jose.JSONWebKey{Key: &k.key.PublicKey, KeyID: k.kid, Algorithm: "RS256", Use: "sig"}
	}
	e.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		writeError(w, status, "internal_clerk_error", "Something went wrong", "There was an internal error on our servers.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// writeError answers with Clerk's error body shape.
func writeError(w http.ResponseWriter, status int, code, message, longMessage string) {
	writeJSON(w, status, clerksdk.APIErrorResponse{
		Errors:  []clerksdk.Error{{Code: code, Message: message, LongMessage: longMessage}},
		TraceID: randomHex(16),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v) // only fails when the client has gone
}

// readJSON decodes a small JSON request body into v, answering 422 as
// Clerk does for a malformed one.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, http.StatusUnprocessableEntity, "form_param_format_invalid", "is invalid",
			"The request body could not be parsed.")
		return false
	}
	return true
}
