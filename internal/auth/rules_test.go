package auth

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	_ "google.golang.org/protobuf/types/known/emptypb" // google/protobuf/empty.proto for testService

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

func TestLoadRulesGatehouse(t *testing.T) {
	services := []protoreflect.ServiceDescriptor{
		gatehousev1.File_gatehouse_v1_user_proto.Services().ByName("UserService"),
		gatehousev1.File_gatehouse_v1_project_proto.Services().ByName("ProjectService"),
		healthpb.File_grpc_health_v1_health_proto.Services().ByName("Health"),
	}
	rules, err := LoadRules(services...)
	if err != nil {
		t.Fatal(err)
	}
	// DESIGN's "Which RPC takes which": sessions everywhere; m2m only on
	// the four reads; API keys and OAuth tokens everywhere, GetMe needing a
	// user.
	users := Credentials(viewer.CredentialSession, viewer.CredentialAPIKey, viewer.CredentialOAuth)
	all := users | Credentials(viewer.CredentialM2M)
	want := map[string]Rule{
		"/gatehouse.v1.UserService/GetMe":            {Credentials: users, RequireUser: true},
		"/gatehouse.v1.UserService/GetUser":          {Credentials: all},
		"/gatehouse.v1.UserService/ListUsers":        {Credentials: all},
		"/gatehouse.v1.ProjectService/CreateProject": {Permissions: []string{PermProjectsCreate}, Credentials: users},
		"/gatehouse.v1.ProjectService/GetProject":    {Permissions: []string{PermProjectsRead}, Credentials: all},
		"/gatehouse.v1.ProjectService/ListProjects":  {Permissions: []string{PermProjectsRead}, Credentials: all},
		"/gatehouse.v1.ProjectService/UpdateProject": {Permissions: []string{PermProjectsUpdate}, Credentials: users},
		"/gatehouse.v1.ProjectService/DeleteProject": {Permissions: []string{PermProjectsDelete}, Credentials: users},
		"/grpc.health.v1.Health/Check":               {Public: true},
		"/grpc.health.v1.Health/List":                {Public: true},
		"/grpc.health.v1.Health/Watch":               {Public: true},
	}
	got := make(map[string]Rule)
	for _, sd := range services {
		for i := range sd.Methods().Len() {
			name := fullMethod(sd.Methods().Get(i))
			if rule, ok := rules.Lookup(name); ok {
				got[name] = rule
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

// testService builds a service acme.v1.Acme whose methods carry the given
// rules (nil: no option).
func testService(t *testing.T, rules map[string]*gatehousev1.AccessRule) protoreflect.ServiceDescriptor {
	t.Helper()
	svc := &descriptorpb.ServiceDescriptorProto{Name: proto.String("Acme")}
	for _, name := range []string{"Open", "Guarded", "Contradiction", "Forgotten", "Machines", "Unspecified", "PublicKinds"} {
		m := &descriptorpb.MethodDescriptorProto{
			Name:       proto.String(name),
			InputType:  proto.String(".google.protobuf.Empty"),
			OutputType: proto.String(".google.protobuf.Empty"),
		}
		if r := rules[name]; r != nil {
			m.Options = &descriptorpb.MethodOptions{}
			proto.SetExtension(m.Options, gatehousev1.E_Access, r)
		}
		svc.Method = append(svc.Method, m)
	}
	fd, err := protodesc.NewFile(&descriptorpb.FileDescriptorProto{
		Name:       proto.String("acme/v1/acme.proto"),
		Package:    proto.String("acme.v1"),
		Syntax:     proto.String("proto3"),
		Dependency: []string{"google/protobuf/empty.proto", "gatehouse/v1/access.proto"},
		Service:    []*descriptorpb.ServiceDescriptorProto{svc},
	}, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Services().Get(0)
}

func TestLoadRulesDeniesByDefault(t *testing.T) {
	sd := testService(t, map[string]*gatehousev1.AccessRule{
		"Guarded":       {Permissions: []string{PermProjectsRead}},
		"Contradiction": {Public: true, Permissions: []string{PermProjectsRead}},
		"Machines":      {AllowMachines: true},
		"Unspecified":   {Credentials: []gatehousev1.CredentialKind{gatehousev1.CredentialKind_CREDENTIAL_KIND_UNSPECIFIED}},
		"PublicKinds":   {Public: true, Credentials: []gatehousev1.CredentialKind{gatehousev1.CredentialKind_CREDENTIAL_KIND_API_KEY}},
	})
	_, err := LoadRules(sd)
	if err == nil {
		t.Fatal("LoadRules accepted methods without rules")
	}
	for _, want := range []string{
		"acme.v1.Acme.Open: no (gatehouse.v1.access) option",
		"acme.v1.Acme.Forgotten: no (gatehouse.v1.access) option",
		"acme.v1.Acme.Contradiction: public with permissions or credentials",
		"acme.v1.Acme.Unspecified: credential kind CREDENTIAL_KIND_UNSPECIFIED",
		"acme.v1.Acme.PublicKinds: public with permissions or credentials",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not list %q", err, want)
		}
	}
	for _, good := range []string{"Guarded", "Machines"} {
		if strings.Contains(err.Error(), good) {
			t.Errorf("error %q lists %s, whose rule is good", err, good)
		}
	}
}

func TestRulesLookup(t *testing.T) {
	sd := testService(t, map[string]*gatehousev1.AccessRule{
		"Open":          {Public: true},
		"Guarded":       {Permissions: []string{PermProjectsRead}},
		"Contradiction": {AllowMachines: true, RequireUser: true},
		"Forgotten":     {},
		"Machines": {AllowMachines: true, Credentials: []gatehousev1.CredentialKind{
			gatehousev1.CredentialKind_CREDENTIAL_KIND_OAUTH, gatehousev1.CredentialKind_CREDENTIAL_KIND_M2M}},
		"Unspecified": {Credentials: []gatehousev1.CredentialKind{gatehousev1.CredentialKind_CREDENTIAL_KIND_API_KEY}},
		"PublicKinds": {Public: true},
	})
	sessions := Credentials(viewer.CredentialSession)
	rules, err := LoadRules(sd)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		method string
		want   Rule
		found  bool
	}{
		{"/acme.v1.Acme/Open", Rule{Public: true}, true},
		{"/acme.v1.Acme/Guarded", Rule{Permissions: []string{PermProjectsRead}, Credentials: sessions}, true},
		{"/acme.v1.Acme/Forgotten", Rule{Credentials: sessions}, true},
		{"/acme.v1.Acme/Contradiction", Rule{Credentials: sessions | Credentials(viewer.CredentialM2M), RequireUser: true}, true},
		{"/acme.v1.Acme/Machines", Rule{Credentials: Credentials(viewer.CredentialM2M, viewer.CredentialOAuth)}, true},
		{"/acme.v1.Acme/Unspecified", Rule{Credentials: Credentials(viewer.CredentialAPIKey)}, true},
		{"/acme.v1.Acme/Missing", Rule{}, false},
		{"/gatehouse.v1.ProjectService/CreateProject", Rule{}, false}, // not loaded here
		{"/grpc.health.v1.Health/Check", Rule{Public: true}, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", Rule{Public: true}, true},
		{"/grpc.health.v1.HealthEvil/Check", Rule{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			got, found := rules.Lookup(tt.method)
			if found != tt.found {
				t.Errorf("found = %v, want %v", found, tt.found)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("rule (-want +got):\n%s", diff)
			}
		})
	}
	var zero Rules
	if _, found := zero.Lookup("/gatehouse.v1.UserService/GetMe"); found {
		t.Errorf("the zero Rules allowed a Gatehouse method")
	}
}

func TestCredentialSet(t *testing.T) {
	s := Credentials(viewer.CredentialSession, viewer.CredentialOAuth)
	got := map[viewer.Credential]bool{}
	for _, k := range allCredentials {
		got[k] = s.Has(k)
	}
	want := map[viewer.Credential]bool{viewer.CredentialSession: true, viewer.CredentialM2M: false,
		viewer.CredentialAPIKey: false, viewer.CredentialOAuth: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Has (-want +got):\n%s", diff)
	}
	if s.String() != "session,oauth" {
		t.Errorf("String = %q, want session,oauth", s.String())
	}
	if CredentialSet(0).Has(0) {
		t.Error("the empty set has the zero credential")
	}
}
