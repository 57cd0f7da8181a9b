package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
	"github.com/gatehouse-dev/gatehouse/internal/viewer"
)

// Rule is the (gatehouse.v1.access) option of one RPC.
type Rule struct {
	// Public RPCs need no token.
	Public bool
	// Permissions must all be held in the caller's tenant.
	Permissions []string
	// Credentials are the kinds of credential that may call the RPC: those
	// the rule lists, sessions only when it lists none, and machine tokens
	// too with allow_machines.
	Credentials CredentialSet
	// RequireUser refuses callers that do not act for a user: an
	// organization's API key, a machine.
	RequireUser bool
}

// CredentialSet is a set of credential kinds.
type CredentialSet uint8

// Credentials returns the set of kinds.
func Credentials(kinds ...viewer.Credential) CredentialSet {
	var s CredentialSet
	for _, k := range kinds {
		s |= 1 << k
	}
	return s
}

// Has reports whether kind is in s.
func (s CredentialSet) Has(kind viewer.Credential) bool { return s&(1<<kind) != 0 }

// String lists the kinds, e.g. "session,api_key".
func (s CredentialSet) String() string {
	var names []string
	for _, k := range allCredentials {
		if s.Has(k) {
			names = append(names, k.String())
		}
	}
	return strings.Join(names, ",")
}

var allCredentials = []viewer.Credential{
	viewer.CredentialSession, viewer.CredentialM2M, viewer.CredentialAPIKey, viewer.CredentialOAuth,
}

// credentialOf maps the proto's kinds to viewer's.
var credentialOf = map[gatehousev1.CredentialKind]viewer.Credential{
	gatehousev1.CredentialKind_CREDENTIAL_KIND_SESSION: viewer.CredentialSession,
	gatehousev1.CredentialKind_CREDENTIAL_KIND_M2M:     viewer.CredentialM2M,
	gatehousev1.CredentialKind_CREDENTIAL_KIND_API_KEY: viewer.CredentialAPIKey,
	gatehousev1.CredentialKind_CREDENTIAL_KIND_OAUTH:   viewer.CredentialOAuth,
}

// Rules maps full method names ("/gatehouse.v1.ProjectService/CreateProject")
// to their Rule. The zero Rules denies every Gatehouse RPC.
type Rules struct {
	byMethod map[string]Rule
}

// publicServices are the services outside Gatehouse that need no token, so
// that health checks and grpcurl work without one. Matched by prefix of the
// full method name.
var publicServices = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.v1.ServerReflection/",
	"/grpc.reflection.v1alpha.ServerReflection/",
}

// LoadRules reads the access rule of every method of services. Every method
// must carry a (gatehouse.v1.access) option, except those of the health and
// reflection services, which are public; the error lists every method that
// lacks one (or whose rule contradicts itself: public with permissions or
// credentials, an empty permission, an unspecified credential kind), so
// that a server missing a rule refuses to start rather than serve the
// method unguarded.
func LoadRules(services ...protoreflect.ServiceDescriptor) (Rules, error) {
	rules := Rules{byMethod: make(map[string]Rule)}
	var problems []string
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			name := fullMethod(md)
			rule, problem, ok := ruleOf(md)
			switch {
			case !ok && isPublicService(name):
				rule = Rule{Public: true}
			case !ok:
				problem = "no (gatehouse.v1.access) option"
			}
			if problem != "" {
				problems = append(problems, fmt.Sprintf("%s: %s", md.FullName(), problem))
				continue
			}
			rules.byMethod[name] = rule
		}
	}
	if len(problems) > 0 {
		return Rules{}, errors.New("auth: access rules: " + strings.Join(problems, "; "))
	}
	return rules, nil
}

// Lookup returns the rule of fullMethod. Methods of the health and
// reflection services are public whether loaded or not; any other method
// not loaded is reported as not found, and denied.
func (r Rules) Lookup(fullMethod string) (Rule, bool) {
	if rule, ok := r.byMethod[fullMethod]; ok {
		return rule, true
	}
	if isPublicService(fullMethod) {
		return Rule{Public: true}, true
	}
	return Rule{}, false
}

// ruleOf reads md's option: ok is false when it has none, and problem says
// what makes a rule contradict itself.
func ruleOf(md protoreflect.MethodDescriptor) (rule Rule, problem string, ok bool) {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, gatehousev1.E_Access) {
		return Rule{}, "", false
	}
	ar, ok := proto.GetExtension(opts, gatehousev1.E_Access).(*gatehousev1.AccessRule)
	if !ok || ar == nil {
		return Rule{}, "", false
	}
	rule = Rule{
		Public:      ar.GetPublic(),
		Permissions: slices.Clone(ar.GetPermissions()),
		RequireUser: ar.GetRequireUser(),
	}
	for _, k := range ar.GetCredentials() {
		c, known := credentialOf[k]
		if !known {
			return Rule{}, fmt.Sprintf("credential kind %v", k), true
		}
		rule.Credentials |= Credentials(c)
	}
	if rule.Credentials == 0 {
		rule.Credentials = Credentials(viewer.CredentialSession)
	}
	if ar.GetAllowMachines() {
		rule.Credentials |= Credentials(viewer.CredentialM2M)
	}
	switch {
	case rule.Public && (len(rule.Permissions) > 0 || len(ar.GetCredentials()) > 0 || ar.GetAllowMachines() || rule.RequireUser):
		return Rule{}, "public with permissions or credentials", true
	case rule.Public:
		rule.Credentials = 0
	case slices.Contains(rule.Permissions, ""):
		return Rule{}, "empty permission", true
	}
	return rule, "", true
}

func fullMethod(md protoreflect.MethodDescriptor) string {
	return "/" + string(md.Parent().FullName()) + "/" + string(md.Name())
}

func isPublicService(fullMethod string) bool {
	for _, prefix := range publicServices {
		if strings.HasPrefix(fullMethod, prefix) {
			return true
		}
	}
	return false
}
