// Package api is the agent's admin API: HTTP/JSON on a unix socket (mode
// 0600, the default) or, when the operator asks for it, a TCP address. The
// raftlb subcommands (status, apply, join, leave) are its clients. It also
// renders the status view for people.
//
// The API holds no cluster logic: it parses and bounds requests and hands
// them to the agent.
package api
