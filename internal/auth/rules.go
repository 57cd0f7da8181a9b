package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// Rule is the (gatehouse.v1.access) option of one RPC.
type Rule struct {
	// Public RPCs need no token.
	Public bool
	// Permissions must all be held in the caller's tenant.
	Permissions []string
	// AllowMachines lets machine tokens call the RPC.
	AllowMachines bool
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
// lacks one (or whose rule contradicts itself), so that a server missing a
// rule refuses to start rather than serve the method unguarded.
func LoadRules(services ...protoreflect.ServiceDescriptor) (Rules, error) {
	rules := Rules{byMethod: make(map[string]Rule)}
	var problems []string
	for _, sd := range services {
		methods := sd.Methods()
		for i := range methods.Len() {
			md := methods.Get(i)
			name := fullMethod(md)
			rule, ok := ruleOf(md)
			switch {
			case !ok && isPublicService(name):
				rule = Rule{Public: true}
			case !ok:
				problems = append(problems, fmt.Sprintf("%s: no (gatehouse.v1.access) option", md.FullName()))
				continue
			case rule.Public && len(rule.Permissions) > 0:
				problems = append(problems, fmt.Sprintf("%s: public with permissions", md.FullName()))
				continue
			case slices.Contains(rule.Permissions, ""):
				problems = append(problems, fmt.Sprintf("%s: empty permission", md.FullName()))
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

func ruleOf(md protoreflect.MethodDescriptor) (Rule, bool) {
	opts := md.Options()
	if opts == nil || !proto.HasExtension(opts, gatehousev1.E_Access) {
		return Rule{}, false
	}
	ar, ok := proto.GetExtension(opts, gatehousev1.E_Access).(*gatehousev1.AccessRule)
	if !ok || ar == nil {
		return Rule{}, false
	}
	return Rule{
		Public:        ar.GetPublic(),
		Permissions:   slices.Clone(ar.GetPermissions()),
		AllowMachines: ar.GetAllowMachines() || slices.Contains(ar.GetCredentials(), gatehousev1.CredentialKind_CREDENTIAL_KIND_M2M),
	}, true
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
