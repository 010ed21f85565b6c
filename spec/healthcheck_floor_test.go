package spec

import (
	"strings"
	"testing"
	"time"
)

// TestDangerousFenceOptionsRefusedWhenProposed: a new spec may not give a
// fence agent an option that runs or writes anything; one in the log from
// an older release still applies (the DC then does not pass it).
func TestDangerousFenceOptionsRefusedWhenProposed(t *testing.T) {
	spec := squidSpec()
	spec.Fencing = Fencing{Devices: []FenceDevice{{Name: "pdu", Agent: "fence_apc", Hosts: map[string]string{"m30": "1"}, Action: FenceOff, Timeout: time.Minute,
		Params: map[string]FenceParam{"passwd_script": {Value: "/bin/echo x"}}}}}
	if err := spec.Validate(); err != nil {
		t.Errorf("in the log: %v", err)
	}
	if err := spec.ValidateNew(); err == nil || !strings.Contains(err.Error(), "passwd_script would let the spec make the fence agent run or write anything as root") {
		t.Errorf("proposed: %v", err)
	}
	for k, want := range map[string]bool{"passwd_script": true, "ssh_path": true, "ssh_options": true, "openrc": true, "debug": true, "ipaddr": false, "identity_file": false, "login": false} {
		if DangerousFenceParam(k) != want {
			t.Errorf("DangerousFenceParam(%s) = %v", k, !want)
		}
	}
}
