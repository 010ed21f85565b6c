package director

import "testing"

var _ Cluster = (*fakeCluster)(nil)

// fakeCluster drives the director the way cluster.Node would: one fake
// per role, so a test reaches each role's knobs through it (w.c.leaders,
// w.c.apply, w.c.setOnline) and a test that needs one role builds just
// that fake.
type fakeCluster struct {
	*fakeLeader
	*fakeLog
	*fakeMembers
	*fakeRPC
}

func newFakeCluster(t *testing.T) *fakeCluster {
	return &fakeCluster{
		fakeLeader:  newFakeLeader(),
		fakeLog:     newFakeLog(t),
		fakeMembers: newFakeMembers(),
		fakeRPC:     newFakeRPC("m30"),
	}
}
