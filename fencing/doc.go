// Package fencing runs STONITH hooks: fence agents that speak the
// ClusterLabs fence-agents protocol, so Debian's fence-agents
// (fence_ipmilan, fence_apc_snmp, fence_virsh, fence_redfish, …) and an
// operator's own scripts work unchanged. Options go as key=value lines on
// standard input (action, nodename, the host argument — plug or port, as
// the agent's metadata says — and the device's own options); the agent
// runs without a shell, in a process group of its own that the device's
// timeout kills whole. Exit 0 is success; anything else, and a timeout, is
// a failure; for status, 0 means on and 2 off.
//
// A node is fenced level by level (every device of a level must succeed,
// or the next level is tried), each device with its retries and its random
// delay. Secrets named by a device's parameters are read from local files
// at the moment they are needed and never logged, returned or stored.
//
// Only the verified DC fences (the director calls this package); nothing
// here decides when.
package fencing
