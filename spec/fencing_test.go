package spec

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseFencingSection(t *testing.T) {
	file := goodFile + `fencing:
  devices:
    - name: ipmi
      agent: fence_ipmilan
      params:
        ip: 10.0.0.30
        password: {file: /etc/raftlb/ipmi.pass}
      hosts: {m30: "1", m40: ""}
      delay: 1s-5s
    - name: pdu
      agent: /usr/sbin/fence_apc_snmp
      hosts: [m30]
      action: off
      timeout: 30
      retries: 0
      monitor_interval: 60s
  levels:
    m30: [[ipmi], [pdu]]
policy: {takeover: fence}
`
	spec, err := ParseServices([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	d := spec.Fencing.Devices
	if len(d) != 2 || d[0].Params["password"].File != "/etc/raftlb/ipmi.pass" || d[0].Plug("m30") != "1" || d[0].Plug("m40") != "m40" ||
		d[0].DelayMin != time.Second || d[0].DelayMax != 5*time.Second || d[0].Action != FenceReboot || d[0].Timeout != DefaultFenceTimeout || d[0].Retries != DefaultFenceRetries {
		t.Fatalf("first device %+v", d[0])
	}
	if d[1].Action != FenceOff || d[1].Timeout != 30*time.Second || d[1].Retries != 0 || d[1].MonitorInterval != time.Minute {
		t.Fatalf("second device %+v", d[1])
	}
	if spec.Policy.Takeover != TakeoverFence || len(spec.Fencing.Levels["m30"]) != 2 {
		t.Fatalf("policy %+v, levels %+v", spec.Policy, spec.Fencing.Levels)
	}
	bad := strings.Replace(file, "password: {file: /etc/raftlb/ipmi.pass}", "password: hunter2", 1)
	_, err = ParseServices([]byte(bad))
	var ve *ValidationError
	if !errors.As(err, &ve) || !strings.Contains(err.Error(), "fencing.devices[0].params.password") || ve.Problems[0].Line == 0 {
		t.Fatalf("a secret in the file: %v, want a problem with its line", err)
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("the refusal repeats the secret: %v", err)
	}
	if _, err := ParseServices([]byte(goodFile + "fencing: {devices: [{name: x, agent: y, hosts: m30}]}\n")); err == nil || !strings.Contains(err.Error(), "hosts") {
		t.Errorf("hosts as a scalar: %v", err)
	}
}
