package fsm

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	node := testNode("m30", "10.0.0.30")
	tests := []struct {
		name    string
		typ     CommandType
		payload any
		want    Command
	}{
		{"set spec", CmdSetSpec, SetSpec{Spec: squidSpec(), ExpectVersion: 7},
			Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: squidSpec(), ExpectVersion: 7}}},
		{"set spec by pointer", CmdSetSpec, &SetSpec{Spec: webSpec()},
			Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: webSpec()}}},
		{"register node", CmdRegisterNode, node,
			Command{Type: CmdRegisterNode, Node: &node}},
		{"deregister node", CmdDeregisterNode, DeregisterNode{Name: "m30"},
			Command{Type: CmdDeregisterNode, Deregister: &DeregisterNode{Name: "m30"}}},
		{"ignore-unknown flag on a known type", CmdDeregisterNode | IgnoreUnknownType, DeregisterNode{Name: "m30"},
			Command{Type: CmdDeregisterNode, IgnoreUnknown: true, Deregister: &DeregisterNode{Name: "m30"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustEncode(t, tt.typ, tt.payload)
			if b[0] != 1 || CommandType(b[1]) != tt.typ {
				t.Errorf("header = % x, want 01 %02x", b[:2], byte(tt.typ))
			}
			got, err := DecodeCommand(b)
			if err != nil {
				t.Fatalf("DecodeCommand: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("DecodeCommand\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEncodeCommandRejects(t *testing.T) {
	tests := []struct {
		name    string
		typ     CommandType
		payload any
	}{
		{"unknown type", 42, DeregisterNode{Name: "x"}},
		{"payload of another type", CmdSetSpec, DeregisterNode{Name: "x"}},
		{"nil payload", CmdRegisterNode, nil},
		{"nil pointer", CmdSetSpec, (*SetSpec)(nil)},
	}
	for _, tt := range tests {
		if b, err := EncodeCommand(tt.typ, tt.payload); err == nil {
			t.Errorf("%s: EncodeCommand = % x, want an error", tt.name, b)
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	hdr := func(typ CommandType, body string) []byte { return append([]byte{1, byte(typ)}, body...) }
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"nil", nil, "too short"},
		{"one byte", []byte{1}, "too short"},
		{"envelope version 0", []byte{0, 1, '{', '}'}, "envelope version 0"},
		{"envelope version 2", []byte{2, 1, '{', '}'}, "envelope version 2"},
		{"unknown type", hdr(99, `{}`), "unknown command type 99"},
		{"no payload", hdr(CmdSetSpec, ``), "not a JSON object"},
		{"null payload", hdr(CmdRegisterNode, `null`), "not a JSON object"},
		{"array payload", hdr(CmdDeregisterNode, `["m30"]`), "not a JSON object"},
		{"bad JSON", hdr(CmdDeregisterNode, `{"name":`), "payload"},
		{"wrong JSON type", hdr(CmdDeregisterNode, `{"name":3}`), "payload"},
		{"bad address", hdr(CmdRegisterNode, `{"name":"m30","address":"10.0.0.300"}`), "payload"},
		{"unknown field", hdr(CmdDeregisterNode, `{"name":"m30","force":true}`), "unknown field"},
		{"unknown nested field", hdr(CmdSetSpec, `{"spec":{"vips":[{"address":"10.0.0.1","mtu":9000}]}}`), "unknown field"},
		{"trailing garbage", hdr(CmdDeregisterNode, `{"name":"m30"}x`), "trailing"},
		{"second object", hdr(CmdDeregisterNode, `{"name":"m30"}{}`), "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd, err := DecodeCommand(tt.in)
			if err == nil {
				t.Fatalf("DecodeCommand = %+v, want an error", cmd)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
		})
	}
}

func TestDecodeCommandUnknownType(t *testing.T) {
	for _, flag := range []bool{false, true} {
		typ := CommandType(0x33)
		if flag {
			typ |= IgnoreUnknownType
		}
		_, err := DecodeCommand([]byte{1, byte(typ), '{', '}'})
		var unknown *UnknownCommandError
		if !errors.As(err, &unknown) {
			t.Fatalf("error %v is not an *UnknownCommandError", err)
		}
		if want := (UnknownCommandError{Type: 0x33, IgnoreUnknown: flag}); *unknown != want {
			t.Errorf("got %+v, want %+v", *unknown, want)
		}
	}
}

// TestDecodeCommandNormalizesSpec: an empty list and a missing one are the
// same spec, whichever form a proposer sent.
func TestDecodeCommandNormalizesSpec(t *testing.T) {
	b := append([]byte{1, byte(CmdSetSpec)}, `{"spec":{"vips":[],"services":[],"policy":{"no_quorum":"stop"}}}`...)
	cmd, err := DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	if cmd.SetSpec.Spec.VIPs != nil || cmd.SetSpec.Spec.Services != nil {
		t.Errorf("empty lists kept: %+v", cmd.SetSpec.Spec)
	}
}

// TestDecodeCommandTimeZones: a JoinedAt with an offset must decode the same
// on every node, whatever its local time zone, and survive re-encoding
// (found by reasoning about FuzzDecodeCommand's round-trip property: "+00:00"
// decoded as time.Local on a UTC host and came back as UTC).
func TestDecodeCommandTimeZones(t *testing.T) {
	for _, ts := range []string{"2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00", "2024-05-01T14:00:00+02:00", "2024-05-01T07:00:00-05:00"} {
		b := append([]byte{1, byte(CmdRegisterNode)}, `{"name":"m30","address":"10.0.0.30","raft_addr":"10.0.0.30:7000",`+
			`"gossip_addr":"10.0.0.30:7946","joined_at":"`+ts+`"}`...)
		cmd, err := DecodeCommand(b)
		if err != nil {
			t.Fatalf("%s: %v", ts, err)
		}
		if want := testNode("m30", "10.0.0.30"); *cmd.Node != want {
			t.Errorf("%s: decoded %+v, want %+v", ts, *cmd.Node, want)
		}
		again, err := DecodeCommand(mustEncode(t, CmdRegisterNode, *cmd.Node))
		if err != nil || !reflect.DeepEqual(again, cmd) {
			t.Errorf("%s: round trip gave %+v, %v", ts, again.Node, err)
		}
	}
}
