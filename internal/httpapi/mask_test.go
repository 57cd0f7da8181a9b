package httpapi

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

var projectDesc = (&gatehousev1.Project{}).ProtoReflect().Descriptor()

func TestMaskPaths(t *testing.T) {
	for _, tt := range []struct {
		body string
		want []string
	}{
		{`{"name": "x"}`, []string{"name"}},
		{`{"description": "", "name": "x"}`, []string{"name", "description"}}, // field-number order
		{`{"status": "PROJECT_STATUS_ARCHIVED"}`, []string{"status"}},
		{`{"description": null}`, []string{"description"}}, // present: cleared
		{`{"id": "prj_x", "name": "x"}`, []string{"name"}}, // the path sets id
		{`{"tenantId": "org_x"}`, []string{"tenantId"}},    // read-only: the handler refuses it
		{`{"tenant_id": "org_x", "tenantId": "org_y"}`, []string{"tenantId"}},
		{`{"nmae": "typo", "name": "x"}`, []string{"name", "nmae"}}, // unknown keys last
		{`{"not_a_field": 1}`, []string{"notAField"}},
		{`{"a-b": 1, "": 2, "1x": 3}`, []string{}}, // not nameable in a mask
		{`{}`, []string{}},
		{`[]`, nil},
		{`"name"`, nil},
		{`not json`, nil},
		{``, nil},
	} {
		got := maskPaths([]byte(tt.body), projectDesc, []protoreflect.Name{"id"})
		if d := cmp.Diff(tt.want, got); d != "" {
			t.Errorf("maskPaths(%s) (-want +got):\n%s", tt.body, d)
		}
	}
}

func TestMuxPattern(t *testing.T) {
	for _, tt := range []struct {
		template, pattern string
		vars              []string
		ok                bool
	}{
		{"/v1/projects/{project.id}", "/v1/projects/{v0}", []string{"project.id"}, true},
		{"/v1/a/{x}/b/{y.z}", "/v1/a/{v0}/b/{v1}", []string{"x", "y.z"}, true},
		{"/v1/projects", "/v1/projects", nil, true},
		{"/v1/{name=projects/*}", "", nil, false},
		{"/v1/projects/{id}:archive", "", nil, false},
		{"/v1/**", "", nil, false},
		{"v1/projects", "", nil, false},
		{"/v1//projects", "", nil, false},
		{"/v1/{}", "", nil, false},
		{"/v1/x{id}", "", nil, false},
	} {
		pattern, vars, err := muxPattern(tt.template)
		if (err == nil) != tt.ok || pattern != tt.pattern || !cmp.Equal(vars, tt.vars) {
			t.Errorf("muxPattern(%q) = %q, %q, %v; want %q, %q, ok %v", tt.template, pattern, vars, err, tt.pattern, tt.vars, tt.ok)
		}
	}
}

// FuzzMaskPaths: whatever the body, the mask built from it is one that
// Vanguard's decoder takes (FieldMask's JSON form), so a caller never meets
// a "bad parameter" for a query it did not write.
func FuzzMaskPaths(f *testing.F) {
	for _, s := range []string{`{"name": "x"}`, `{"tenant_id": 1, "Foo_Bar": 2}`, `{"__": 1}`, `{"a_1b": 1}`, `{"É": 1}`, `[]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		paths := maskPaths([]byte(body), projectDesc, []protoreflect.Name{"id"})
		if len(paths) == 0 {
			return
		}
		var fm fieldmaskpb.FieldMask
		if err := protojson.Unmarshal([]byte(strconv.Quote(strings.Join(paths, ","))), &fm); err != nil {
			t.Fatalf("mask %q from %q: %v", paths, body, err)
		}
	})
}
