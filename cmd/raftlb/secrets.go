package main

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/raftlb/raftlb/cluster"
	"github.com/raftlb/raftlb/internal/cli"
	"github.com/raftlb/raftlb/spec"
)

func runKeygen(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("keygen", stderr)
	out := fs.String("o", "", "write the key to this file (mode 0600) instead of standard output")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: keygen takes no arguments", cli.ErrUsage)
	}
	key, err := cluster.GenerateKey()
	if err != nil {
		return err
	}
	if *out == "" {
		fmt.Fprintln(stdout, cluster.EncodeKey(key))
		return nil
	}
	if err := cluster.WriteKeyFile(*out, key); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote gossip key to %s; copy it to every node and pass --key-file %s\n", *out, *out)
	return nil
}

func runTLS(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: tls needs a subcommand: init or cert", cli.ErrUsage)
	}
	switch args[0] {
	case "init":
		fs := newFlagSet("tls init", stderr)
		dir := fs.String("dir", "", "directory for ca.pem and ca-key.pem (created 0700)")
		days := fs.Int("days", 3650, "validity of the CA in days")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || fs.NArg() > 0 || *days < 1 {
			return fmt.Errorf("%w: tls init needs --dir DIR (and --days ≥ 1)", cli.ErrUsage)
		}
		if err := cluster.InitCA(*dir, time.Duration(*days)*24*time.Hour); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created cluster CA in %s; keep ca-key.pem safe and copy only ca.pem to the nodes\n", *dir)
		return nil
	case "cert":
		fs := newFlagSet("tls cert", stderr)
		dir := fs.String("dir", "", "directory holding the CA (ca.pem, ca-key.pem)")
		out := fs.String("out", "", "the node's TLS directory to write: NODE.pem, NODE-key.pem and a copy of ca.pem, never the CA's key (created 0700)")
		name := fs.String("name", "", "node name (as given to raftlb agent --name)")
		days := fs.Int("days", 825, "validity of the certificate in days")
		var ips stringList
		fs.Var(&ips, "ip", "the node's address (its --bind), where peers accept the certificate from (repeatable; at least one)")
		if err := parseFlags(fs, args[1:]); err != nil {
			return err
		}
		if *dir == "" || *name == "" || *out == "" || fs.NArg() > 0 || *days < 1 {
			return fmt.Errorf("%w: tls cert needs --dir CADIR --name NODE --out NODEDIR", cli.ErrUsage)
		}
		// A bad name is a command-line mistake, like a bad --ip.
		if err := spec.ValidateNodeName(*name); err != nil {
			return fmt.Errorf("%w: --name: %v", cli.ErrUsage, err)
		}
		var parsed []net.IP
		for _, s := range ips {
			ip := net.ParseIP(s)
			if ip == nil {
				return fmt.Errorf("%w: --ip %q is not an IP address", cli.ErrUsage, s)
			}
			parsed = append(parsed, ip)
		}
		if len(parsed) == 0 {
			return fmt.Errorf("%w: tls cert needs --ip, the node's --bind address: peers accept its certificate from the addresses it lists only", cli.ErrUsage)
		}
		if err := cluster.IssueNodeDir(*dir, *out, *name, parsed, time.Duration(*days)*24*time.Hour); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s with ca.pem, %s.pem and %s-key.pem: copy it to node %s as its --tls-dir (/etc/raftlb/tls)\n", *out, *name, *name, *name)
		return nil
	default:
		return fmt.Errorf("%w: unknown tls subcommand %q: want init or cert", cli.ErrUsage, args[0])
	}
}
