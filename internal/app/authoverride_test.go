package app_test

import (
	"testing"

	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"

	"github.com/gatehouse-dev/gatehouse/internal/projectapi"
	"github.com/gatehouse-dev/gatehouse/internal/userapi"
)

// go-grpc-middleware's auth interceptors call a service's AuthFuncOverride
// instead of the AuthFunc they were given, which would skip the access
// rules for every RPC of that service. No Gatehouse service may have one.
func TestNoServiceOverridesAuthentication(t *testing.T) {
	for name, impl := range map[string]any{
		"userapi.Service":    (*userapi.Service)(nil),
		"projectapi.Service": (*projectapi.Service)(nil),
	} {
		if _, ok := impl.(grpcauth.ServiceAuthFuncOverride); ok {
			t.Errorf("%s implements AuthFuncOverride: its RPCs would bypass the access rules", name)
		}
	}
}
