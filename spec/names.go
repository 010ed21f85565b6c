package spec

import "time"

// The string values the spec uses. They are the words operators write in the
// services file, so the other packages compare against these constants
// rather than repeating the literals.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"

	// ForwardRoute is LVS direct routing (ipvsadm -g, ldirectord "gate"):
	// the DC rewrites only the MAC address and real servers answer clients
	// directly from the VIP on their loopback.
	ForwardRoute  = "route"
	ForwardMasq   = "masq"   // NAT (ipvsadm -m)
	ForwardTunnel = "tunnel" // IP-in-IP (ipvsadm -i)

	NoQuorumStop   = "stop"
	NoQuorumFreeze = "freeze"
	NoQuorumIgnore = "ignore" // refused: nothing would act on it

	TakeoverFence     = "fence"
	TakeoverLease     = "lease"
	TakeoverImmediate = "immediate"

	CheckTCP   = "tcp"
	CheckHTTP  = "http"
	CheckHTTPS = "https"
	CheckExec  = "exec"

	OnFailRemove    = "remove"
	OnFailQuiescent = "quiescent" // keep the server with weight 0
)

// Defaults the services-file parser fills in, so a stored Spec never depends
// on what a particular release considers the default.
const (
	DefaultProtocol   = ProtocolTCP
	DefaultScheduler  = "wlc"
	DefaultForwarding = ForwardRoute
	DefaultNoQuorum   = NoQuorumStop
	DefaultTakeover   = TakeoverLease
	DefaultWeight     = 1

	DefaultCheckType     = CheckTCP
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
	DefaultCheckRise     = 2
	DefaultCheckFall     = 2
	DefaultCheckOnFail   = OnFailRemove
	DefaultCheckPath     = "/"
	DefaultExpectStatus  = 200

	// MaxWeight is the largest weight ipvsadm accepts.
	MaxWeight = 65535
)

// validScheduler reports whether s is an IPVS scheduler ipvsadm -s accepts.
func validScheduler(s string) bool {
	switch s {
	case "rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh":
		return true
	}
	return false
}

// schedulerList is validScheduler's set, for error messages.
const schedulerList = "rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, mh"
