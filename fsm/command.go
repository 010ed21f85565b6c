package fsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/raftlb/raftlb/spec"
)

// A command is what the leader proposes and every node applies. On the wire:
//
//	byte 0    envelope version (1)
//	byte 1    command type; the high bit is IgnoreUnknownType
//	byte 2..  the payload as one JSON object
//
// The version byte lets a later release change the encoding without
// guessing; the type byte lets it add commands.

// CommandType says what a command does.
type CommandType uint8

const (
	// CmdSetSpec replaces the spec; payload SetSpec.
	CmdSetSpec CommandType = 1
	// CmdRegisterNode adds or updates a node registry entry; payload Node.
	CmdRegisterNode CommandType = 2
	// CmdDeregisterNode removes a node registry entry; payload DeregisterNode.
	CmdDeregisterNode CommandType = 3
	// CmdClaimVIPs records the DC holding VIPs; payload ClaimVIPs.
	CmdClaimVIPs CommandType = 4
	// CmdReleaseVIPs records a holder letting go; payload ReleaseVIPs.
	CmdReleaseVIPs CommandType = 5
	// CmdFenceStart records a fencing about to run; payload FenceStart.
	CmdFenceStart CommandType = 6
	// CmdFenceDone records its result; payload FenceDone.
	CmdFenceDone CommandType = 7
	// CmdFenceConfirm records an operator's confirmation that a node is
	// down; payload FenceConfirm.
	CmdFenceConfirm CommandType = 8
	// CmdDeviceCheck records a change in a fence device's check (its
	// validate-all or monitor action); payload DeviceCheck. Informational:
	// proposed with IgnoreUnknownType.
	CmdDeviceCheck CommandType = 9
	// CmdNodeStandby puts a node in standby or out; payload NodeStandby.
	CmdNodeStandby CommandType = 10
	// CmdServerDisable disables or enables a real server; payload
	// ServerDisable.
	CmdServerDisable CommandType = 11

	// IgnoreUnknownType, OR'd into a type, tells a follower too old to know
	// the type to skip the entry instead of crashing (as in nomad). Set it
	// only on commands that older nodes can safely miss, such as purely
	// informational records; never on ones that change what nodes serve.
	IgnoreUnknownType CommandType = 0x80
)

// envelopeVersion is the only encoding this release reads and writes.
const envelopeVersion = 1

func (t CommandType) String() string {
	flag := ""
	if t&IgnoreUnknownType != 0 {
		flag = "|ignore-unknown"
	}
	switch t &^ IgnoreUnknownType {
	case CmdSetSpec:
		return "set-spec" + flag
	case CmdRegisterNode:
		return "register-node" + flag
	case CmdDeregisterNode:
		return "deregister-node" + flag
	case CmdClaimVIPs:
		return "claim-vips" + flag
	case CmdReleaseVIPs:
		return "release-vips" + flag
	case CmdFenceStart:
		return "fence-start" + flag
	case CmdFenceDone:
		return "fence-done" + flag
	case CmdFenceConfirm:
		return "fence-confirm" + flag
	case CmdDeviceCheck:
		return "device-check" + flag
	case CmdNodeStandby:
		return "node-standby" + flag
	case CmdServerDisable:
		return "server-disable" + flag
	}
	return fmt.Sprintf("type-%d%s", uint8(t&^IgnoreUnknownType), flag)
}

// SetSpec replaces the whole spec.
type SetSpec struct {
	Spec spec.Spec `json:"spec"`
	// ExpectVersion, when not 0, makes the change conditional: it is refused
	// with a *ConflictError unless the current spec has this version, so two
	// operators editing the same spec cannot overwrite each other unseen.
	ExpectVersion uint64 `json:"expect_version,omitempty"`
}

// DeregisterNode removes a node from the registry.
type DeregisterNode struct {
	Name string `json:"name"`
	// Revoke, when set, revokes the node's certificates in the same
	// entry, so a removed node is never a member with a usable
	// certificate nor a former member with one.
	Revoke *Revocation `json:"revoke,omitempty"`
}

// Command is a decoded command. Exactly one payload field is set, the one
// that matches Type.
type Command struct {
	// Type is the command type without the IgnoreUnknownType flag.
	Type          CommandType
	IgnoreUnknown bool

	SetSpec      *SetSpec
	Node         *Node
	Deregister   *DeregisterNode
	ClaimVIPs    *ClaimVIPs
	ReleaseVIPs  *ReleaseVIPs
	FenceStart   *FenceStart
	FenceDone    *FenceDone
	FenceConfirm *FenceConfirm
	DeviceCheck  *DeviceCheck
	Standby      *NodeStandby
	Disable      *ServerDisable
}

// UnknownCommandError is returned by DecodeCommand for a command type this
// release does not know.
type UnknownCommandError struct {
	Type          CommandType // without the flag
	IgnoreUnknown bool
}

func (e *UnknownCommandError) Error() string {
	return fmt.Sprintf("unknown command type %d (ignore-unknown %t)", uint8(e.Type), e.IgnoreUnknown)
}

// EncodeCommand builds a command. t may carry IgnoreUnknownType. payload is
// the type's payload, as a value or a non-nil pointer.
func EncodeCommand(t CommandType, payload any) ([]byte, error) {
	var ok bool
	switch t &^ IgnoreUnknownType {
	case CmdSetSpec:
		ok = isPayload[SetSpec](payload)
	case CmdRegisterNode:
		ok = isPayload[Node](payload)
	case CmdDeregisterNode:
		ok = isPayload[DeregisterNode](payload)
	case CmdClaimVIPs:
		ok = isPayload[ClaimVIPs](payload)
	case CmdReleaseVIPs:
		ok = isPayload[ReleaseVIPs](payload)
	case CmdFenceStart:
		ok = isPayload[FenceStart](payload)
	case CmdFenceDone:
		ok = isPayload[FenceDone](payload)
	case CmdFenceConfirm:
		ok = isPayload[FenceConfirm](payload)
	case CmdDeviceCheck:
		ok = isPayload[DeviceCheck](payload)
	case CmdNodeStandby:
		ok = isPayload[NodeStandby](payload)
	case CmdServerDisable:
		ok = isPayload[ServerDisable](payload)
	default:
		return nil, fmt.Errorf("encode command: unknown type %s", t)
	}
	if !ok {
		return nil, fmt.Errorf("encode %s command: wrong payload %T", t, payload)
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encode %s command: %w", t, err)
	}
	return append([]byte{envelopeVersion, byte(t)}, body...), nil
}

func isPayload[T any](payload any) bool {
	switch p := payload.(type) {
	case T:
		return true
	case *T:
		return p != nil
	}
	return false
}

// DecodeCommand parses a command. It never panics; anything that is not
// exactly what EncodeCommand writes is an error, and an unknown type is an
// *UnknownCommandError so the caller can honour IgnoreUnknown.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) < 2 {
		return Command{}, fmt.Errorf("decode command: %d bytes is too short", len(b))
	}
	if b[0] != envelopeVersion {
		return Command{}, fmt.Errorf("decode command: unsupported envelope version %d", b[0])
	}
	t := CommandType(b[1])
	cmd := Command{Type: t &^ IgnoreUnknownType, IgnoreUnknown: t&IgnoreUnknownType != 0}
	var err error
	switch cmd.Type {
	case CmdSetSpec:
		cmd.SetSpec, err = decodePayload[SetSpec](b[2:])
		if err == nil {
			// Empty and missing lists mean the same; store one form.
			cmd.SetSpec.Spec = cmd.SetSpec.Spec.Normalized()
		}
	case CmdRegisterNode:
		cmd.Node, err = decodePayload[Node](b[2:])
		if err == nil {
			cmd.Node.JoinedAt = canonicalTime(cmd.Node.JoinedAt)
		}
	case CmdDeregisterNode:
		if cmd.Deregister, err = decodePayload[DeregisterNode](b[2:]); err == nil && cmd.Deregister.Revoke != nil {
			r := cmd.Deregister.Revoke.canonical()
			cmd.Deregister.Revoke = &r
		}
	case CmdClaimVIPs:
		if cmd.ClaimVIPs, err = decodePayload[ClaimVIPs](b[2:]); err == nil {
			cmd.ClaimVIPs.At = canonicalTime(cmd.ClaimVIPs.At)
		}
	case CmdReleaseVIPs:
		if cmd.ReleaseVIPs, err = decodePayload[ReleaseVIPs](b[2:]); err == nil {
			cmd.ReleaseVIPs.At = canonicalTime(cmd.ReleaseVIPs.At)
		}
	case CmdFenceStart:
		if cmd.FenceStart, err = decodePayload[FenceStart](b[2:]); err == nil {
			cmd.FenceStart.At = canonicalTime(cmd.FenceStart.At)
		}
	case CmdFenceDone:
		if cmd.FenceDone, err = decodePayload[FenceDone](b[2:]); err == nil {
			cmd.FenceDone.At = canonicalTime(cmd.FenceDone.At)
		}
	case CmdFenceConfirm:
		if cmd.FenceConfirm, err = decodePayload[FenceConfirm](b[2:]); err == nil {
			cmd.FenceConfirm.At = canonicalTime(cmd.FenceConfirm.At)
		}
	case CmdDeviceCheck:
		if cmd.DeviceCheck, err = decodePayload[DeviceCheck](b[2:]); err == nil {
			cmd.DeviceCheck.At = canonicalTime(cmd.DeviceCheck.At)
		}
	case CmdNodeStandby:
		if cmd.Standby, err = decodePayload[NodeStandby](b[2:]); err == nil {
			cmd.Standby.At = canonicalTime(cmd.Standby.At)
		}
	case CmdServerDisable:
		if cmd.Disable, err = decodePayload[ServerDisable](b[2:]); err == nil {
			cmd.Disable.At = canonicalTime(cmd.Disable.At)
		}
	default:
		return Command{}, &UnknownCommandError{Type: cmd.Type, IgnoreUnknown: cmd.IgnoreUnknown}
	}
	if err != nil {
		return Command{}, fmt.Errorf("decode %s command: %w", t, err)
	}
	return cmd, nil
}

// canonicalTime returns t in UTC. Parsing "+00:00" or "+02:00" yields
// time.Local when the offset matches the node's own time zone and a fixed
// zone otherwise, so the same entry would decode differently on nodes in
// different zones, and "+00:00" would not survive a snapshot (which writes
// "Z"). The instant is all the registry needs.
func canonicalTime(t time.Time) time.Time {
	return t.UTC()
}

// decodePayload decodes exactly one JSON object with only known fields.
// Being strict here means a payload a newer release added fields to is
// refused rather than applied with those fields silently dropped.
func decodePayload[T any](body []byte) (*T, error) {
	if trimmed := bytes.TrimLeft(body, " \t\r\n"); len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, errors.New("payload is not a JSON object")
	}
	var v T
	if err := decodeStrict(json.NewDecoder(bytes.NewReader(body)), &v); err != nil {
		return nil, fmt.Errorf("payload: %w", err)
	}
	return &v, nil
}
