package httpapi

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"google.golang.org/genproto/googleapis/api/annotations"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// withInferredMasks routes the PATCH rules of services whose request has an
// update_mask (a google.protobuf.FieldMask) and whose body is one message
// field — PATCH /v1/projects/{project.id} with body "project" — through
// inferMask before next, and everything else straight to next.
//
// Vanguard sets update_mask only from ?update_mask=; DESIGN also lets a REST
// caller leave the mask out and name the fields by sending them, as
// google.api.http transcoders commonly do (and AIP-134 describes).
func withInferredMasks(services []protoreflect.ServiceDescriptor, next http.Handler, limit int) (http.Handler, error) {
	mux := http.NewServeMux()
	routes := 0
	for _, sd := range services {
		for _, b := range httpRules(sd) {
			h, pattern, err := maskRoute(b.method, b.rule, next, limit)
			if err != nil {
				return nil, fmt.Errorf("httpapi: %s: %w", b.method.FullName(), err)
			}
			if h != nil {
				mux.Handle(pattern, h)
				routes++
			}
		}
	}
	if routes == 0 {
		return next, nil
	}
	mux.Handle("/", next)
	return mux, nil
}

// maskRoute returns the inferMask handler and its ServeMux pattern for rule,
// or a nil handler if rule is not a PATCH of that shape.
func maskRoute(md protoreflect.MethodDescriptor, rule *annotations.HttpRule, next http.Handler, limit int) (http.Handler, string, error) {
	method, template := rulePattern(rule)
	if method != http.MethodPatch || rule.GetBody() == "" || rule.GetBody() == "*" {
		return nil, "", nil
	}
	mask := md.Input().Fields().ByName("update_mask")
	if mask == nil || mask.Message() == nil || mask.Message().FullName() != "google.protobuf.FieldMask" {
		return nil, "", nil
	}
	body := md.Input().Fields().ByName(protoreflect.Name(rule.GetBody()))
	if body == nil || body.Message() == nil || body.IsList() || body.IsMap() {
		return nil, "", fmt.Errorf("PATCH body %q: want a message field of the request", rule.GetBody())
	}
	pattern, vars, err := muxPattern(template)
	if err != nil {
		return nil, "", err
	}
	im := &inferMask{next: next, limit: limit, body: body.Message()}
	for _, v := range vars {
		if name, ok := strings.CutPrefix(v, rule.GetBody()+"."); ok && !strings.Contains(name, ".") {
			im.bound = append(im.bound, protoreflect.Name(name))
		}
	}
	return im, http.MethodPatch + " " + pattern, nil
}

// muxPattern turns a google.api.http path template of literal segments and
// single-segment variables ("/v1/projects/{project.id}") into a ServeMux
// pattern ("/v1/projects/{v0}") and the variables' field paths. Wildcards,
// "{x=…}" and verbs are not needed by Gatehouse's routes and are refused.
func muxPattern(template string) (string, []string, error) {
	if !strings.HasPrefix(template, "/") || strings.ContainsAny(template, "*=:") {
		return "", nil, fmt.Errorf("path template %q: only literal segments and {field} variables are supported", template)
	}
	segs := strings.Split(template[1:], "/")
	var vars []string
	for i, s := range segs {
		if v, ok := strings.CutPrefix(s, "{"); ok {
			v, ok = strings.CutSuffix(v, "}")
			if !ok || v == "" || strings.ContainsAny(v, "{}") {
				return "", nil, fmt.Errorf("path template %q: bad variable %q", template, s)
			}
			segs[i] = fmt.Sprintf("{v%d}", len(vars))
			vars = append(vars, v)
		} else if s == "" || strings.ContainsAny(s, "{}") {
			return "", nil, fmt.Errorf("path template %q: bad segment %q", template, s)
		}
	}
	return "/" + strings.Join(segs, "/"), vars, nil
}

// inferMask sets ?update_mask= from the top-level fields of the JSON body
// when the request names no mask, then hands the request on. It changes
// nothing else: the body still goes to Vanguard, which decodes it, and the
// gRPC handler still validates the mask (an unknown or read-only field is
// INVALID_ARGUMENT there, as over gRPC).
type inferMask struct {
	next  http.Handler
	limit int
	body  protoreflect.MessageDescriptor // the message the body holds
	bound []protoreflect.Name            // its fields the URL path sets
}

func (m *inferMask) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Has("update_mask") || q.Has("updateMask") {
		m.next.ServeHTTP(w, r)
		return
	}
	if enc := r.Header.Get("Content-Encoding"); enc != "" && enc != "identity" {
		// A compressed body is Vanguard's to decode; with no mask it
		// reaches the handler with none, which is INVALID_ARGUMENT.
		m.next.ServeHTTP(w, r)
		return
	}
	// Read at most one byte past the limit: a larger body goes on
	// unread, and Vanguard refuses it as it refuses any oversized body.
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(m.limit)+1))
	r = r.Clone(r.Context())
	if err != nil || len(body) > m.limit {
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}
		m.next.ServeHTTP(w, r)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	if paths := maskPaths(body, m.body, m.bound); len(paths) > 0 {
		q.Set("update_mask", strings.Join(paths, ","))
		r.URL.RawQuery = q.Encode()
	}
	m.next.ServeHTTP(w, r)
}

// maskPaths returns the update mask, in FieldMask's JSON form (lowerCamel
// paths), that a JSON object body names for msg: its keys, by JSON or
// proto name, in field-number order, except fields the URL path sets. Keys
// that are no field of msg come last, so that the handler names them in its
// INVALID_ARGUMENT rather than Vanguard's decoder silently dropping them.
// A body that is not a JSON object names nothing.
func maskPaths(body []byte, msg protoreflect.MessageDescriptor, bound []protoreflect.Name) []string {
	var object map[string]json.RawMessage
	if err := json.Unmarshal(body, &object); err != nil {
		return nil
	}
	var known []protoreflect.FieldDescriptor
	var unknown []string
	for key := range object {
		fd := msg.Fields().ByJSONName(key)
		if fd == nil {
			fd = msg.Fields().ByName(protoreflect.Name(key))
		}
		switch {
		case fd == nil:
			if p, ok := camelPath(key); ok {
				unknown = append(unknown, p)
			}
		case !slices.Contains(bound, fd.Name()) && !slices.Contains(known, fd):
			known = append(known, fd)
		}
	}
	slices.SortFunc(known, func(a, b protoreflect.FieldDescriptor) int { return cmp.Compare(a.Number(), b.Number()) })
	slices.Sort(unknown)
	paths := make([]string, 0, len(known)+len(unknown))
	for _, fd := range known {
		paths = append(paths, fd.JSONName())
	}
	return append(paths, unknown...)
}

// camelPath writes an identifier-like key ("foo_bar") as a FieldMask JSON
// path ("fooBar"); other keys cannot be named in a mask.
func camelPath(key string) (string, bool) {
	if key == "" || len(key) > 100 {
		return "", false
	}
	var b strings.Builder
	upper := false
	for i, c := range key {
		switch {
		case c == '_':
			upper = true
		case c >= 'a' && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
			b.WriteRune(c)
			upper = false
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9' && i > 0:
			b.WriteRune(c)
			upper = false
		default:
			return "", false
		}
	}
	return b.String(), b.Len() > 0
}
