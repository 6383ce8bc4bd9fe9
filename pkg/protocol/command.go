package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/strictjson"
)

// Commands are work the portal pushes to one PBX. Each is a compact JWS of
// type TypeCommand signed by a portal key, delivered in heartbeat answers
// until the agent reports its result. The agent applies a command at most
// once: it remembers every id until the command has expired.

// TypeCommand is the "typ" of a signed command.
const TypeCommand = "pbx-command+jws"

// CommandType names what a command asks for.
type CommandType string

const (
	CommandSSHOpen    CommandType = "ssh.open"
	CommandSSHClose   CommandType = "ssh.close"
	CommandWMSUpgrade CommandType = "wms.upgrade"
)

// Limits the agent holds every command to.
const (
	// MaxSSHTTL is the longest temporary SSH access a command may open.
	MaxSSHTTL = 24 * time.Hour
	// MaxCommandLifetime bounds a command's expiry from its issue, so the
	// journal of ids that defeats replay stays small. A WMS maintenance
	// window must end within it.
	MaxCommandLifetime = 31 * 24 * time.Hour
	// MaxSSHKeys bounds the support keys one ssh.open may carry.
	MaxSSHKeys = 16
	// DefaultSSHPort is where temporary support SSH listens.
	DefaultSSHPort = 2222
)

// Command is the signed content of a portal command.
type Command struct {
	ID        string      `json:"id"`
	PBXID     string      `json:"pbx_id"`
	Type      CommandType `json:"type"`
	IssuedAt  time.Time   `json:"iat"`
	ExpiresAt time.Time   `json:"exp"`

	SSH *SSHOpen    `json:"ssh,omitempty"` // ssh.open
	WMS *WMSUpgrade `json:"wms,omitempty"` // wms.upgrade
}

// SSHOpen opens temporary support SSH access.
type SSHOpen struct {
	Port int             `json:"port,omitempty"` // 0: the appliance's ssh.port
	TTL  license.Seconds `json:"ttl_seconds"`    // 1 s to MaxSSHTTL
	// PublicKeys are support keys in authorized_keys format, one each.
	PublicKeys []string `json:"public_keys,omitempty"`
	// Tunnel asks for access through the portal: the support sshd listens
	// on loopback only and the agent dials the portal's tunnel endpoint
	// (PathTunnel), so nothing is opened inbound. The appliance chooses
	// the loopback port: a tunnel names none.
	Tunnel bool `json:"tunnel,omitempty"`
}

// WMSUpgrade upgrades the PBX's management software in a maintenance
// window given in absolute UTC times.
type WMSUpgrade struct {
	Version     string    `json:"version"`    // major.minor.YYYYMMDD.build
	Repository  string    `json:"repository"` // relNN
	WindowStart time.Time `json:"window_start"`
	WindowEnd   time.Time `json:"window_end"`
}

// commandIDPattern keeps ids safe to log, to use in file names and to show.
var commandIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidCommandID reports whether id is a well-formed command id.
func ValidCommandID(id string) bool { return commandIDPattern.MatchString(id) }

// Why a command is refused. A refused command is reported with its id (when
// well-formed) so the portal learns of it; nothing of it runs.
const (
	RefusedBadSignature = "bad_signature" // not signed by a trusted portal key, or altered
	RefusedExpired      = "expired"       // its expiry has passed
	RefusedForeign      = "foreign"       // it is for another PBX
	RefusedReplayed     = "replayed"      // its id was seen before with other content
	RefusedMalformed    = "malformed"     // signed, but breaks the command format
	RefusedUnsupported  = "unsupported"   // a type this agent does not know
	RefusedRejected     = "rejected"      // valid, but this appliance will not do it (reason given)
)

// CommandError is a refused command: the code above, the detail, and the id
// the command claims (empty when even that is unreadable).
type CommandError struct {
	ID     string
	Code   string
	Detail string
}

func (e *CommandError) Error() string {
	id := e.ID
	if id == "" {
		id = "(no readable id)"
	}
	return fmt.Sprintf("command %s refused (%s): %s", id, e.Code, e.Detail)
}

// VerifyCommand checks a signed command for PBX pbxID at licence time now:
// signature, type, format, PBX and expiry. Refusals are *CommandError.
func VerifyCommand(compact string, kr *license.Keyring, pbxID string, now time.Time) (*Command, error) {
	v, err := kr.Verify(compact, TypeCommand, "command")
	if err != nil {
		code := RefusedBadSignature
		if errors.Is(err, license.ErrWrongType) || errors.Is(err, license.ErrInvalid) {
			code = RefusedMalformed // signed, but not a command, or ambiguous JSON
		}
		return nil, &CommandError{ID: ClaimedCommandID(compact), Code: code, Detail: err.Error()}
	}
	c, err := DecodeCommand(v.Payload)
	if err != nil {
		return nil, err
	}
	switch {
	case c.PBXID != pbxID:
		return nil, &CommandError{ID: c.ID, Code: RefusedForeign, Detail: fmt.Sprintf("it is for PBX %q, and this appliance holds %q", c.PBXID, pbxID)}
	case !now.Before(c.ExpiresAt):
		return nil, &CommandError{ID: c.ID, Code: RefusedExpired, Detail: fmt.Sprintf("it expired at %s (licence time %s)", c.ExpiresAt.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))}
	}
	return c, nil
}

// DecodeCommand parses a command's signed payload strictly (no unknown,
// duplicate or case-variant member names, one JSON value) and checks its
// format. It verifies nothing: VerifyCommand does, then calls it.
func DecodeCommand(payload []byte) (*Command, error) {
	var c Command
	if err := strictjson.UnmarshalKnown(payload, &c); err != nil {
		return nil, &CommandError{ID: probeID(payload), Code: RefusedMalformed, Detail: "its content is not a command: " + err.Error()}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Validate checks the format of a command: what a signature cannot vouch
// for. Refusals are *CommandError.
func (c *Command) Validate() error {
	bad := func(format string, args ...any) error {
		return &CommandError{ID: safeID(c.ID), Code: RefusedMalformed, Detail: fmt.Sprintf(format, args...)}
	}
	switch {
	case !ValidCommandID(c.ID):
		return bad("its id is not 1 to 64 letters, digits, '-' or '_'")
	case c.PBXID == "":
		return bad("it names no PBX")
	case c.IssuedAt.IsZero() || c.ExpiresAt.IsZero():
		return bad("it has no issue or expiry time")
	case license.CheckTime("iat", c.IssuedAt) != nil:
		return bad("%v", license.CheckTime("iat", c.IssuedAt))
	case license.CheckTime("exp", c.ExpiresAt) != nil:
		return bad("%v", license.CheckTime("exp", c.ExpiresAt))
	case !c.ExpiresAt.After(c.IssuedAt):
		return bad("it expires before it is issued")
	case c.ExpiresAt.Sub(c.IssuedAt) > MaxCommandLifetime:
		return bad("it is valid for %s, more than the %s allowed", c.ExpiresAt.Sub(c.IssuedAt), MaxCommandLifetime)
	}
	params := 0
	if c.SSH != nil {
		params++
	}
	if c.WMS != nil {
		params++
	}
	switch c.Type {
	case CommandSSHOpen:
		if c.SSH == nil || params != 1 {
			return bad("ssh.open needs its ssh parameters and no others")
		}
		return c.SSH.validate(bad)
	case CommandSSHClose:
		if params != 0 {
			return bad("ssh.close takes no parameters")
		}
	case CommandWMSUpgrade:
		if c.WMS == nil || params != 1 {
			return bad("wms.upgrade needs its wms parameters and no others")
		}
		return c.WMS.validate(bad, c.ExpiresAt)
	default:
		return &CommandError{ID: c.ID, Code: RefusedUnsupported, Detail: fmt.Sprintf("this agent knows no command %q", c.Type)}
	}
	return nil
}

func (s *SSHOpen) validate(bad func(string, ...any) error) error {
	switch {
	case s.Tunnel && s.Port != 0:
		return bad("a tunnelled ssh.open names no port (it has %d): the appliance's sshd listens on loopback, reached through the tunnel", s.Port)
	case s.Port != 0 && (s.Port < 1024 || s.Port > 65535):
		return bad("ssh port %d is outside 1024-65535", s.Port)
	case s.TTL < 1 || s.TTL > license.Seconds(MaxSSHTTL/time.Second):
		// Compared as seconds: 18446744074 s times 1e9 wraps to 0.29 s.
		return bad("ssh ttl_seconds %d is outside 1 to %d", s.TTL, int64(MaxSSHTTL/time.Second))
	case len(s.PublicKeys) > MaxSSHKeys:
		return bad("%d ssh public keys, more than %d", len(s.PublicKeys), MaxSSHKeys)
	}
	for i, k := range s.PublicKeys {
		if _, err := ParseSSHKey(k); err != nil {
			return bad("ssh public key %d: %v", i+1, err)
		}
	}
	return nil
}

func (w *WMSUpgrade) validate(bad func(string, ...any) error, expires time.Time) error {
	switch {
	case w.Version == "" || len(w.Version) > 64:
		return bad("wms.upgrade needs a version")
	case w.Repository == "" || len(w.Repository) > 64:
		return bad("wms.upgrade needs a repository")
	case w.WindowStart.IsZero() || w.WindowEnd.IsZero() || !w.WindowEnd.After(w.WindowStart):
		return bad("wms.upgrade needs a maintenance window whose end is after its start")
	case license.CheckTime("window_start", w.WindowStart) != nil:
		return bad("%v", license.CheckTime("window_start", w.WindowStart))
	case w.WindowEnd.After(expires):
		return bad("the maintenance window ends after the command expires")
	}
	return nil
}

// ParseSSHKey parses one support key in authorized_keys format and refuses
// options (from=, command=, ...), which would let a key reach beyond the
// temporary access the portal grants. It returns the key re-encoded, with
// its comment, as a single line.
func ParseSSHKey(line string) (string, error) {
	if strings.ContainsAny(line, "\r\n") {
		return "", errors.New("it spans more than one line")
	}
	pub, comment, options, rest, err := ssh.ParseAuthorizedKey([]byte(line))
	switch {
	case err != nil:
		return "", fmt.Errorf("not an SSH public key in authorized_keys format: %w", err)
	case len(options) > 0:
		return "", errors.New("it carries authorized_keys options; send the bare key")
	case len(strings.TrimSpace(string(rest))) > 0:
		return "", errors.New("it is followed by more text")
	}
	out := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if c := strings.Map(printableASCII, comment); c != "" {
		out += " " + c
	}
	return out, nil
}

func printableASCII(r rune) rune {
	if r < 0x20 || r > 0x7e {
		return -1
	}
	return r
}

// ClaimedCommandID reads the id a command claims without verifying it,
// for reporting a refusal; "" when none is readable or well-formed.
func ClaimedCommandID(compact string) string {
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	return probeID(payload)
}

// probeID reads the id a payload claims without decoding the rest, so a
// command refused for its content is still reported under its id. Two
// spellings of "id" at the top level ("id" twice, "ID") claim none.
func probeID(payload []byte) string {
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	id, seen := "", false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return ""
		}
		if !strings.EqualFold(name, "id") {
			continue
		}
		if seen || name != "id" || json.Unmarshal(raw, &id) != nil {
			return ""
		}
		seen = true
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return ""
	}
	if _, err := dec.Token(); err != io.EOF { // a second value may claim another id
		return ""
	}
	return safeID(id)
}

func safeID(id string) string {
	if ValidCommandID(id) {
		return id
	}
	return ""
}

// CommandState is where a command stands on the appliance.
type CommandState string

const (
	CommandReceived CommandState = "received" // journaled, not started
	CommandWaiting  CommandState = "waiting"  // journaled, waiting for its window
	CommandRunning  CommandState = "running"  // started
	CommandDone     CommandState = "done"     // applied
	CommandFailed   CommandState = "failed"   // tried, and did not work
	CommandRefused  CommandState = "refused"  // never run: see Reason
)

// Final reports whether a command in state s has a result to report.
func (s CommandState) Final() bool {
	return s == CommandDone || s == CommandFailed || s == CommandRefused
}

// CommandResult is the outcome of a command, reported in heartbeats until
// the portal acknowledges its id.
type CommandResult struct {
	ID      string       `json:"id"`
	Type    CommandType  `json:"type,omitempty"`
	State   CommandState `json:"state"`
	Reason  string       `json:"reason,omitempty"` // a Refused* code when refused
	Message string       `json:"message,omitempty"`
	At      time.Time    `json:"at"`

	SSH *SSHResult `json:"ssh,omitempty"`
	WMS any        `json:"wms,omitempty"` // the upgrade helper's result
}

// SSHResult tells support how to reach and verify the host.
type SSHResult struct {
	Open  bool      `json:"open"`
	Port  int       `json:"port,omitempty"`
	Until time.Time `json:"until,omitzero"`
	// HostKeys are the host key fingerprints (SHA256:...), so support can
	// check the host on first connection.
	HostKeys []string `json:"host_keys,omitempty"`
}

// Wait is the long-poll that lets a command reach the agent within seconds
// of being queued while heartbeats stay at their interval. The agent posts a
// signed WaitRequest; the portal answers as soon as it has something for
// the PBX (Answer.Pending), or after Wait with nothing. The agent then runs
// a heartbeat, which carries the commands.
const (
	PathWait = "/api/v1/wait"
	TypeWait = "pbx-wait+jws" // appliance → portal
	// MaxWait is the longest the portal holds a wait.
	MaxWait = 55 * time.Second
)

// WaitRequest asks the portal to answer when it has something for the PBX.
type WaitRequest struct {
	Request
	PBXID    string          `json:"pbx_id"`
	Revision int64           `json:"revision"` // the licence revision held
	Wait     license.Seconds `json:"wait_seconds"`
}
