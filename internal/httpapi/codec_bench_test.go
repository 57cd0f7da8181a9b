package httpapi

import (
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	gatehousev1 "github.com/gatehouse-dev/gatehouse/gen/gatehouse/v1"
)

// BenchmarkGetMeCodecs is what transcoding one GetMe answer costs: Vanguard
// unmarshals gRPC's protobuf answer and marshals it as JSON, with every
// field (EmitUnpopulated, its default, which the HTTP listener keeps) —
// beside JSON without the unpopulated fields and protobuf alone.
func BenchmarkGetMeCodecs(b *testing.B) {
	now := timestamppb.New(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC))
	msg := &gatehousev1.GetMeResponse{
		User: &gatehousev1.User{
			Id: "user_2abcdefghijklmnopqrstuvwxyz", Email: "dev@gatehouse.test",
			FirstName: "Dev", LastName: "User", CreateTime: now, UpdateTime: now,
		},
		Session: &gatehousev1.Session{TenantId: "user_2abcdefghijklmnopqrstuvwxyz", Credential: "session"},
	}
	wire, err := proto.Marshal(msg)
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name string
		run  func() error
	}{
		{"protojson_emit_unpopulated", func() error {
			_, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(msg)
			return err
		}},
		{"protojson", func() error { _, err := protojson.Marshal(msg); return err }},
		{"proto_marshal", func() error { _, err := proto.Marshal(msg); return err }},
		{"proto_unmarshal", func() error { return proto.Unmarshal(wire, &gatehousev1.GetMeResponse{}) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
