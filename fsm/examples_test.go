package fsm

import (
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// TestExampleResourcesFile: the resources example parses with its
// defaults filled in, is written back unchanged, and applies as schema 5.
func TestExampleResourcesFile(t *testing.T) {
	data, err := os.ReadFile("../deploy/examples/resources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := spec.ParseServices(data)
	if err != nil {
		t.Fatalf("ParseServices: %v", err)
	}
	want := []spec.Resource{
		{Name: "www-data", Agent: "ocf:heartbeat:Filesystem", Params: map[string]string{"device": "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4-part1", "directory": "/var/www", "fstype": "ext4"},
			StartTimeout: time.Minute, StopTimeout: time.Minute, MonitorTimeout: spec.DefaultResourceTimeout, MonitorInterval: 20 * time.Second},
		{Name: "apache", Agent: "ocf:heartbeat:apache", Params: map[string]string{"configfile": "/etc/apache2/apache2.conf"},
			StartTimeout: 40 * time.Second, StopTimeout: time.Minute, MonitorTimeout: spec.DefaultResourceTimeout, MonitorInterval: spec.DefaultResourceMonitorInterval},
		{Name: "notify-noc", Command: []string{"/etc/raftlb/hooks/noc-board", "--board", "proxy"},
			StartTimeout: spec.DefaultResourceTimeout, StopTimeout: spec.DefaultResourceTimeout, MonitorTimeout: spec.DefaultResourceTimeout},
	}
	if !reflect.DeepEqual(got.Resources, want) {
		t.Errorf("resources\n got %+v\nwant %+v", got.Resources, want)
	}
	if p, typ, ok := got.Resources[0].OCF(); !ok || p != "heartbeat" || typ != "Filesystem" {
		t.Errorf("OCF() = %q %q %v", p, typ, ok)
	}
	if _, _, ok := got.Resources[2].OCF(); ok {
		t.Error("a command is not an OCF agent")
	}
	out, err := spec.FormatServices(got)
	if err != nil {
		t.Fatal(err)
	}
	back, err := spec.ParseServices(out)
	if err != nil || !reflect.DeepEqual(back, got) {
		t.Fatalf("formatted and parsed again: %v\n%s", err, out)
	}
	if s := (Command{Type: CmdSetSpec, SetSpec: &SetSpec{Spec: got}}).Schema(); s != 5 {
		t.Errorf("a spec with resources needs schema %d, want 5", s)
	}
}
