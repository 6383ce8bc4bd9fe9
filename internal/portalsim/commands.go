package portalsim

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// Commands: the admin API queues a signed command for a PBX; heartbeat
// answers carry it until the appliance reports its result; a waiting
// appliance (the long-poll of protocol.PathWait) is woken at once.

// Defaults of a queued command.
const (
	DefaultCommandTTL = 24 * time.Hour // how long a command may wait for its appliance
	DefaultSSHTTL     = time.Hour
	maxKeptCommands   = 200 // per PBX; the oldest finished ones go first
)

// Command states on the portal, beside the appliance's final states
// (done, failed, refused).
const (
	CommandQueued    = "queued"    // not yet carried by an answer
	CommandDelivered = "delivered" // carried at least once, no result yet
	CommandExpired   = "expired"   // expired with no result
)

// commandRecord is one command as the portal keeps it.
type commandRecord struct {
	ID          string                  `json:"id"`
	Type        protocol.CommandType    `json:"type"`
	Signed      string                  `json:"signed"` // the compact JWS sent to the appliance
	IssuedAt    time.Time               `json:"issued_at"`
	ExpiresAt   time.Time               `json:"expires_at"`
	State       string                  `json:"state"`
	DeliveredAt *time.Time              `json:"delivered_at,omitempty"`
	ReportedAt  *time.Time              `json:"reported_at,omitempty"`
	Result      *protocol.CommandResult `json:"result,omitempty"`
	// Tunnel and TTL are those of a tunnelled ssh.open: the appliance may
	// dial the tunnel endpoint for it while its access lasts (tunnel.go).
	Tunnel bool            `json:"tunnel,omitempty"`
	TTL    license.Seconds `json:"ttl_seconds,omitempty"`
}

func (c *commandRecord) open() bool {
	return c.State == CommandQueued || c.State == CommandDelivered
}

// CommandRequest is the body of POST /admin/v1/pbxs/{ref}/commands.
type CommandRequest struct {
	Type protocol.CommandType `json:"type"`
	// TTL is how long the command may wait for the appliance (default
	// DefaultCommandTTL; for wms.upgrade, at least to the window's end).
	TTL *Duration            `json:"ttl,omitempty"`
	SSH *protocol.SSHOpen    `json:"ssh,omitempty"`
	WMS *protocol.WMSUpgrade `json:"wms,omitempty"`
	// PBXID signs the command for another PBX id: a test of the agent's
	// refusal of foreign commands. Empty: the PBX of the path.
	PBXID string `json:"pbx_id,omitempty"`
	// ExpiresAt overrides the expiry, even into the past: a test of the
	// agent's refusal of expired commands.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Unchecked signs a command that breaks the agent's rules on WMS
	// versions, repositories and windows (the format still holds): a test
	// of the agent's own refusals.
	Unchecked bool `json:"unchecked,omitempty"`
}

// CommandView is a command as the admin API shows it.
type CommandView struct {
	ID          string                  `json:"id"`
	Type        protocol.CommandType    `json:"type"`
	State       string                  `json:"state"`
	IssuedAt    time.Time               `json:"issued_at"`
	ExpiresAt   time.Time               `json:"expires_at"`
	DeliveredAt *time.Time              `json:"delivered_at,omitempty"`
	ReportedAt  *time.Time              `json:"reported_at,omitempty"`
	Result      *protocol.CommandResult `json:"result,omitempty"`
	Tunnel      bool                    `json:"tunnel,omitempty"` // a tunnelled ssh.open
}

// CommandList is the body of GET /admin/v1/pbxs/{ref}/commands.
type CommandList struct {
	Commands []CommandView `json:"commands"`
}

func (c *commandRecord) view() CommandView {
	return CommandView{ID: c.ID, Type: c.Type, State: c.State, IssuedAt: c.IssuedAt, ExpiresAt: c.ExpiresAt,
		DeliveredAt: c.DeliveredAt, ReportedAt: c.ReportedAt, Result: c.Result, Tunnel: c.Tunnel}
}

func newCommandID() string {
	b := make([]byte, 9)
	rand.Read(b) // never fails: see crypto/rand.Read
	return "cmd-" + base64.RawURLEncoding.EncodeToString(b)
}

// queueCommand signs and queues a command, waking the PBX's appliance.
func (p *Portal) queueCommand(r *http.Request) (any, error) {
	var in CommandRequest
	if err := decode(r, &in); err != nil {
		return nil, err
	}
	var out CommandView
	err := p.updatePBX(r, true, func(rec *pbxRecord, now time.Time) error {
		c := protocol.Command{ID: newCommandID(), PBXID: rec.ID, Type: in.Type, IssuedAt: now, SSH: in.SSH, WMS: in.WMS}
		ttl := DefaultCommandTTL
		if in.TTL != nil {
			ttl = time.Duration(*in.TTL)
		}
		if c.Type == protocol.CommandSSHOpen && c.SSH == nil {
			c.SSH = &protocol.SSHOpen{TTL: license.Seconds(DefaultSSHTTL / time.Second)}
		}
		if w := c.WMS; w != nil && in.TTL == nil && w.WindowEnd.Sub(now) > ttl {
			ttl = w.WindowEnd.Sub(now)
		}
		c.ExpiresAt = now.Add(ttl).Truncate(time.Second)
		check := checkAgentRules
		if in.Unchecked {
			check = func(c *protocol.Command, _ time.Time) error { return c.Validate() }
		}
		if err := check(&c, now); err != nil {
			return errBadRequest("refused before signing, as the agent would refuse it: %v", err)
		}
		// The test overrides come after validation: they make commands an
		// appliance must refuse.
		if in.PBXID != "" {
			c.PBXID = in.PBXID
		}
		held := c.ExpiresAt // how long the portal offers it
		if in.ExpiresAt != nil {
			c.ExpiresAt = *in.ExpiresAt
			if !c.ExpiresAt.After(c.IssuedAt) {
				c.IssuedAt = c.ExpiresAt.Add(-time.Hour) // an old command, kept back
			}
		}
		signed, err := p.signer.Sign(protocol.TypeCommand, c)
		if err != nil {
			return err
		}
		cr := &commandRecord{ID: c.ID, Type: c.Type, Signed: signed, IssuedAt: c.IssuedAt, ExpiresAt: held, State: CommandQueued}
		if c.SSH != nil && c.SSH.Tunnel {
			cr.Tunnel, cr.TTL = true, c.SSH.TTL
		}
		p.addCommandLocked(rec, cr)
		if c.Type == protocol.CommandSSHClose || c.Type == protocol.CommandSSHOpen {
			// The new command supersedes the open tunnel: the portal ends
			// its side at once, whenever the appliance applies it.
			p.tunnels.end(rec.ID)
		}
		out = cr.view()
		p.log.Info("command queued", "pbx", rec.Name, "id", c.ID, "type", c.Type, "expires", c.ExpiresAt)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return created{out}, nil
}

// QueueSigned queues an already signed command for the PBX ref, as is: a
// test's way to deliver a command the portal would never make (replayed,
// tampered with, signed by another key). It returns the id it claims.
func (p *Portal) QueueSigned(ref, signed string) (string, error) {
	id := protocol.ClaimedCommandID(signed)
	if id == "" {
		id = newCommandID()
	}
	err := p.update(func(now time.Time) error {
		rec, err := p.lookup(ref, now)
		if err != nil {
			return err
		}
		p.addCommandLocked(rec, &commandRecord{ID: id, Type: "raw", Signed: signed, IssuedAt: now,
			ExpiresAt: now.Add(DefaultCommandTTL), State: CommandQueued})
		return nil
	})
	return id, err
}

// SignedCommand returns a command as the portal signed it, for tests that
// replay it.
func (p *Portal) SignedCommand(ref, id string) (string, error) {
	var signed string
	err := p.update(func(now time.Time) error {
		rec, err := p.lookup(ref, now)
		if err != nil {
			return err
		}
		for _, c := range rec.Commands {
			if c.ID == id {
				signed = c.Signed
				return nil
			}
		}
		return errNotFound("PBX %q has no command %q", rec.Name, id)
	})
	return signed, err
}

// Signer returns the portal's signing key, for tests that forge or replay
// commands. It is the key the portal signs everything with.
func (p *Portal) Signer() *license.Signer { return p.signer }

// addCommandLocked appends a command, drops the oldest finished ones beyond
// the cap, and wakes the appliance. Callers hold p.mu inside update.
func (p *Portal) addCommandLocked(rec *pbxRecord, c *commandRecord) {
	rec.Commands = append(rec.Commands, c)
	for len(rec.Commands) > maxKeptCommands {
		i := slices.IndexFunc(rec.Commands, func(c *commandRecord) bool { return !c.open() })
		if i < 0 {
			i = 0
		}
		rec.Commands = slices.Delete(rec.Commands, i, i+1)
	}
	p.markDirty()
	p.wakeLocked(rec.ID)
}

// listCommands answers GET /admin/v1/pbxs/{ref}/commands.
func (p *Portal) listCommands(r *http.Request) (any, error) {
	var out CommandList
	err := p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
		p.expireCommandsLocked(rec, now)
		out.Commands = make([]CommandView, 0, len(rec.Commands))
		for _, c := range rec.Commands {
			out.Commands = append(out.Commands, c.view())
		}
		return nil
	})
	return out, err
}

// getCommand answers GET /admin/v1/pbxs/{ref}/commands/{id}; with
// ?wait=DURATION it waits up to then for the command's result.
func (p *Portal) getCommand(r *http.Request) (any, error) {
	var wait time.Duration
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > 10*time.Minute {
			return nil, errBadRequest("wait %q: give a duration up to 10m, such as 30s", s)
		}
		wait = d
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		var out CommandView
		var changed <-chan struct{}
		err := p.updatePBX(r, false, func(rec *pbxRecord, now time.Time) error {
			p.expireCommandsLocked(rec, now)
			i := slices.IndexFunc(rec.Commands, func(c *commandRecord) bool { return c.ID == r.PathValue("id") })
			if i < 0 {
				return errNotFound("PBX %q has no command %q", rec.Name, r.PathValue("id"))
			}
			out = rec.Commands[i].view()
			changed = p.resultSignalLocked()
			return nil
		})
		if err != nil || out.Result != nil || out.State == CommandExpired || wait == 0 {
			return out, err
		}
		select {
		case <-changed:
		case <-deadline.C:
			return out, nil
		case <-r.Context().Done():
			return nil, r.Context().Err()
		case <-p.done:
			return nil, errClosed()
		}
	}
}

// expireCommandsLocked marks open commands past their expiry.
func (p *Portal) expireCommandsLocked(rec *pbxRecord, now time.Time) {
	for _, c := range rec.Commands {
		if c.open() && !now.Before(c.ExpiresAt) {
			c.State = CommandExpired
			p.markDirty()
		}
	}
}

// commandsFor returns the signed open commands for a heartbeat answer and
// marks them delivered.
func (p *Portal) commandsForLocked(rec *pbxRecord, now time.Time) []string {
	p.expireCommandsLocked(rec, now)
	var out []string
	for _, c := range rec.Commands {
		if !c.open() || len(out) == protocol.MaxCommands {
			continue
		}
		signed := c.Signed
		if p.st.Faults.BadCommandSignature > 0 && p.rng.Float64() < p.st.Faults.BadCommandSignature {
			signed = flipSignature(signed)
		}
		out = append(out, signed)
		if c.State == CommandQueued {
			t := now
			c.State, c.DeliveredAt = CommandDelivered, &t
			p.markDirty()
		}
	}
	return out
}

// recordResultsLocked takes an appliance's results and returns the ids to
// acknowledge: every well-formed one, known or not, so the appliance stops
// reporting it.
func (p *Portal) recordResultsLocked(rec *pbxRecord, results []protocol.CommandResult, now time.Time) []string {
	var acked []string
	for _, res := range results {
		if !protocol.ValidCommandID(res.ID) || !res.State.Final() {
			continue
		}
		acked = append(acked, res.ID)
		i := slices.IndexFunc(rec.Commands, func(c *commandRecord) bool { return c.ID == res.ID })
		if i < 0 {
			p.log.Info("result for an unknown command", "pbx", rec.Name, "id", res.ID, "state", res.State, "reason", res.Reason)
			continue
		}
		c := rec.Commands[i]
		if c.Result != nil {
			continue // reported again before our ack arrived
		}
		res := res
		t := now
		c.Result, c.ReportedAt, c.State = &res, &t, string(res.State)
		p.markDirty()
		p.log.Info("command result", "pbx", rec.Name, "id", c.ID, "type", c.Type, "state", res.State, "reason", res.Reason, "message", res.Message)
	}
	if len(acked) > 0 {
		p.signalResultsLocked()
	}
	return acked
}

// pendingLocked reports whether the PBX's appliance, holding revision,
// has something to fetch: an open command or a newer licence. The claimed
// revision only decides how soon the wait ends: every wait's answer states
// the current licence, which the agent checks against what it holds, so a
// claim rewritten on the way delays a licence by one wait at most (and a
// claim set high cannot make every wait end at once).
func (p *Portal) pendingLocked(rec *pbxRecord, revision int64, now time.Time) bool {
	if rec.License.Revision > revision || rec.deleted() {
		return true
	}
	p.expireCommandsLocked(rec, now)
	return slices.ContainsFunc(rec.Commands, (*commandRecord).open)
}

// wakeLocked ends the waits of a PBX's appliance. Callers hold p.mu.
func (p *Portal) wakeLocked(pbxID string) {
	if ch, ok := p.waiters[pbxID]; ok {
		close(ch)
		delete(p.waiters, pbxID)
	}
}

// waitSignalLocked returns a channel closed at the PBX's next wake.
func (p *Portal) waitSignalLocked(pbxID string) <-chan struct{} {
	if p.waiters == nil {
		p.waiters = map[string]chan struct{}{}
	}
	ch, ok := p.waiters[pbxID]
	if !ok {
		ch = make(chan struct{})
		p.waiters[pbxID] = ch
	}
	return ch
}

// resultSignalLocked returns a channel closed when the next result arrives.
func (p *Portal) resultSignalLocked() <-chan struct{} {
	if p.results == nil {
		p.results = make(chan struct{})
	}
	return p.results
}

func (p *Portal) signalResultsLocked() {
	if p.results != nil {
		close(p.results)
		p.results = nil
	}
}

// wait answers an appliance's long-poll: at once when something is
// pending, else when something arrives or the wait ends.
func (p *Portal) wait(ctx context.Context, body string, _ bool) (*reply, error) {
	var req protocol.WaitRequest
	kid, err := p.verifyDeviceRequest(body, protocol.TypeWait, &req, &req.Request)
	if err != nil {
		return nil, err
	}
	wait := min(max(req.Wait.Duration(), 0), protocol.MaxWait)
	var rep *reply
	var woken <-chan struct{}
	err = p.update(func(now time.Time) error {
		if stale(req.Time, now) {
			rep = p.staleReply(req.Request, req.PBXID, now)
			return nil
		}
		if err := p.useNonce(kid, req.Nonce, now); err != nil {
			return err
		}
		r := p.byID[req.PBXID]
		if r == nil || r.Device == nil || r.Device.DeviceID != kid {
			// Not bound (any more): the heartbeat tells it why.
			rep = p.pendingReply(req.Request, req.PBXID, true, now)
			return nil
		}
		if p.pendingLocked(r, req.Revision, now) {
			rep = p.pendingReply(req.Request, r.ID, true, now)
			return p.stateCurrentLocked(rep, r)
		}
		woken = p.waitSignalLocked(r.ID)
		return nil
	})
	if err != nil || rep != nil {
		return rep, err
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	pending := false
	select {
	case <-woken:
		pending = true
	case <-t.C:
	case <-ctx.Done(): // the client left, or the server is shutting down
	case <-p.done:
		return nil, errClosed()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rep = p.pendingReply(req.Request, req.PBXID, pending, p.nowLocked())
	if r := p.byID[req.PBXID]; r != nil && r.Device != nil && r.Device.DeviceID == kid && !r.deleted() {
		if err := p.stateCurrentLocked(rep, r); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// stateCurrentLocked makes a wait's answer state the PBX's current licence,
// as a heartbeat's does: the agent heartbeats at once when it differs from
// the one it holds, whatever its request claimed. Callers hold p.mu.
func (p *Portal) stateCurrentLocked(rep *reply, r *pbxRecord) error {
	lic, err := p.signLicense(r.License)
	if err != nil {
		return err
	}
	ok := p.okReply(protocol.Request{}, r, lic, time.Time{})
	rep.answer.Revision, rep.answer.Digest, rep.answer.Standing = ok.answer.Revision, ok.answer.Digest, ok.answer.Standing
	return nil
}

func (p *Portal) pendingReply(req protocol.Request, pbxID string, pending bool, now time.Time) *reply {
	return &reply{answer: protocol.Answer{Status: protocol.StatusOK, Time: now, Nonce: req.Nonce, PBXID: pbxID,
		Interval: license.Seconds(p.interval / time.Second), Pending: pending}}
}

// verifyDeviceRequest verifies body, a request of type typ signed by a
// known appliance's device key, into v, whose embedded Request is req, and
// checks that request's nonce. It returns the device key's id.
func (p *Portal) verifyDeviceRequest(body, typ string, v any, req *protocol.Request) (string, error) {
	kid, _, err := license.PeekHeader(body)
	if err != nil {
		return "", errBadRequest("the request is not a valid compact JWS: %v", err)
	}
	p.mu.Lock()
	dev := p.devices[kid]
	p.mu.Unlock()
	if dev == nil {
		return "", &apiError{status: http.StatusUnauthorized, code: protocol.CodeUnknownDevice,
			msg: fmt.Sprintf("the portal knows no appliance with device key %q: activate first", kid)}
	}
	if err := protocol.VerifyRequest(body, typ, dev, v); err != nil {
		return "", requestError(err, kid)
	}
	return kid, checkRequest(*req)
}
