package cluster

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// What reaches a node from the network or its data directory is decoded
// without panicking, and what decodes survives a round trip.

func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"v":1,"r":"10.0.0.1:7947","e":3,"s":true,"d":"kernel","c":3}`))
	f.Add([]byte(`{"v":1,"r":"[2001:db8::1]:7947","w":true,"n":"claiming the VIPs failed","l":true}`))
	f.Add([]byte(`{"v":2,"r":"10.0.0.1:7947"}`))
	f.Add([]byte(`{"v":1,"r":"nope"}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		out, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeMeta(out)
		if err != nil || !reflect.DeepEqual(back, m) {
			t.Fatalf("metadata round trip: %+v → %s → %+v (%v)", m, out, back, err)
		}
	})
}

func FuzzDecodeRPCRequest(f *testing.F) {
	f.Add([]byte(`{"op":"ping","from":"n2"}`))
	f.Add([]byte(`{"op":"apply","from":"n2","spec":{"version":0,"vips":[],"services":[],"policy":{"no_quorum":"stop"}},"expect_version":3}`))
	f.Add([]byte(`{"op":"remove-node","from":"n2","body":{"node":"n3","force":true}}`))
	f.Add([]byte(`{"op":"leave","from":"n2","extra":1}`))
	f.Add([]byte(`{"op":"ping"} {"op":"ping"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeRPCRequest(bytes.NewReader(b))
		if err != nil {
			return
		}
		out, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRPCRequest(bytes.NewReader(out)); err != nil {
			t.Fatalf("a decoded request does not decode again: %s: %v", out, err)
		}
	})
}

func FuzzParsePeers(f *testing.F) {
	f.Add([]byte(`["10.0.0.2:7946","[2001:db8::2]:7946","m40.example:7946"]`))
	f.Add([]byte(`["10.0.0.2"]`))
	f.Add([]byte(`{"peers":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, err := parsePeers(b)
		if err != nil {
			return
		}
		out, _ := json.Marshal(peers)
		if back, err := parsePeers(out); err != nil || !reflect.DeepEqual(back, peers) {
			t.Fatalf("peers round trip: %q → %q (%v)", peers, back, err)
		}
	})
}
