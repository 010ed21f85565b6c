// Package status assembles the cluster status view — what crm_mon and
// ipvsadm -Ln show together — from the three places that know a part of
// it: the cluster node (DC, term, quorum, nodes and their roles), the
// replicated state (spec, VIPs, services, real servers) and the DC's
// health checks (asked of the DC over the cluster's RPC channel when this
// node is not DC). It holds no state and no logic of its own beyond
// putting those together; its types are the JSON contract of
// `raftlb status --json`.
package status
