// Package health probes real servers and decides, with rise and fall
// counts, whether each one is up or down: the health checks of ldirectord
// (checktype=connect, negotiate) and keepalived (TCP_CHECK, HTTP_GET,
// SSL_GET with an MD5 digest, MISC_CHECK).
//
// Checkers probe one server once; Tracker is the pure rise/fall step
// function; Monitor runs one probe loop per real server and reports state
// changes only, so a steady cluster produces no events. The director acts
// on those changes. Nothing here touches the kernel.
package health
