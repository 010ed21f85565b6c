package realserver

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzParseStateFile: the VIP state file in the data directory is read
// without panicking; what is read has valid addresses and writes back the
// same.
func FuzzParseStateFile(f *testing.F) {
	f.Add([]byte(`[{"address":"172.95.69.100","interface":"eth0"},{"address":"2001:db8::1","interface":"bond0"}]`))
	f.Add([]byte(`[{"address":""}]`))
	f.Add([]byte(`[{"address":"10.0.0.1"}]`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		vips, err := parseStateFile(b, "vips.json")
		if err != nil {
			return
		}
		for _, v := range vips {
			if !v.Address.IsValid() {
				t.Fatalf("an invalid address passed: %+v", v)
			}
		}
		out, _ := json.Marshal(vips)
		if back, err := parseStateFile(out, "vips.json"); err != nil || !reflect.DeepEqual(back, vips) {
			t.Fatalf("state file round trip: %+v → %+v (%v)", vips, back, err)
		}
	})
}
