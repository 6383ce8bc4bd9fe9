package portalsim

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/license"
	"github.com/pbx-agent/pbx-agent/pkg/protocol"
)

// maxNonceLen bounds a request's nonce; the agent sends 22 characters.
const maxNonceLen = 128

// reply is what an agent endpoint answers before it is signed.
type reply struct {
	answer protocol.Answer
	// previous is the PBX's previous licence revision, for the replay_old
	// fault; nil when there is none.
	previous *license.Document
	// signed is the answer already signed by the handler, which chains it;
	// empty for the wrapper to sign.
	signed string
	// bare answers a compact heartbeat: only the headers HTTP needs
	// (Content-Length), as the agent reads the body by its "typ".
	bare bool
}

// agentFunc verifies and handles one agent request body, returning the
// reply to sign or a refusal. replayOld is the fault that signs the
// previous licence revision into an ok answer.
type agentFunc func(ctx context.Context, body string, replayOld bool) (*reply, error)

// agent wraps an agent endpoint: faults before and after it, reading the
// body, signing the answer. Refusals are unsigned JSON.
func (p *Portal) agent(name string, fn agentFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := p.drawFaults()
		if err != nil {
			writeError(w, err)
			return
		}
		if f.latency > 0 {
			t := time.NewTimer(f.latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				// The client went away, or the server is shutting down:
				// nothing was done.
				t.Stop()
				writeError(w, &apiError{status: http.StatusServiceUnavailable, code: protocol.CodeUnavailable,
					msg: "the request ended during injected latency; nothing was done"})
				return
			case <-p.done:
				t.Stop()
				writeError(w, errClosed())
				return
			}
		}
		if err := f.refusal(); err != nil {
			p.log.Debug("fault injected", "endpoint", name, "err", err)
			writeError(w, err)
			return
		}
		body, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		rep, err := fn(r.Context(), body, f.replayOld)
		if err != nil {
			p.log.Info("agent request refused", "endpoint", name, "err", err)
			writeError(w, err)
			return
		}
		out := rep.signed
		if out == "" {
			if out, err = p.signAnswer(rep, f.replayOld); err != nil {
				p.log.Error("signing answer", "endpoint", name, "err", err)
				writeError(w, err)
				return
			}
		}
		out = f.damage(out)
		if rep.bare {
			// nil, not absent: Go's server would add a Date and sniff a
			// Content-Type. A POST's answer is not cached without
			// Cache-Control anyway.
			w.Header()["Date"] = nil
			w.Header()["Content-Type"] = nil
		} else {
			w.Header().Set("Content-Type", protocol.ContentType)
			w.Header().Set("Cache-Control", "no-store")
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, out)
	})
}

// readBody reads a signed request body: the right media type, or none
// (a compact heartbeat sends none: its "typ" says what it is), at most
// protocol.MaxBodySize bytes.
func readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if _, present := r.Header["Content-Type"]; !present {
		err, mt = nil, protocol.ContentType
	}
	if err != nil || mt != protocol.ContentType {
		return "", &apiError{status: http.StatusUnsupportedMediaType, code: protocol.CodeBadRequest,
			msg: fmt.Sprintf("the body must be a compact JWS sent as %s", protocol.ContentType)}
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, protocol.MaxBodySize))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return "", &apiError{status: http.StatusRequestEntityTooLarge, code: protocol.CodeBadRequest,
			msg: fmt.Sprintf("the body exceeds %d bytes", protocol.MaxBodySize)}
	case err != nil:
		return "", errBadRequest("reading the body: %v", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// signAnswer signs a reply as a portal answer. With replayOld, an ok
// answer carries the previous licence revision instead, validly signed.
func (p *Portal) signAnswer(rep *reply, replayOld bool) (string, error) {
	a := rep.answer
	if replayOld && a.Status == protocol.StatusOK && rep.previous != nil {
		lic, err := p.signLicense(*rep.previous)
		if err != nil {
			return "", err
		}
		a.License = lic
	}
	s, err := p.signer.Sign(protocol.TypeAnswer, a)
	if err != nil {
		return "", fmt.Errorf("signing answer: %w", err)
	}
	return s, nil
}

// activate binds a PBX to the appliance whose device key signed the request.
func (p *Portal) activate(_ context.Context, body string, replayOld bool) (*reply, error) {
	dev, err := claimedDeviceKey(body)
	if err != nil {
		return nil, err
	}
	kid := protocol.DeviceKeyID(dev)
	if hk, _, err := license.PeekHeader(body); err != nil {
		return nil, errBadRequest("the request is not a valid compact JWS: %v", err)
	} else if hk != kid {
		return nil, &apiError{status: http.StatusUnauthorized, code: protocol.CodeBadSignature,
			msg: fmt.Sprintf("the request is signed under key id %q, but the device key it carries is %q", hk, kid)}
	}
	var req protocol.ActivateRequest
	if err := protocol.VerifyRequest(body, protocol.TypeActivate, dev, &req); err != nil {
		return nil, requestError(err, kid)
	}
	if err := checkRequest(req.Request); err != nil {
		return nil, err
	}
	if !req.Model.Valid() {
		return nil, errBadRequest("unknown appliance model %q: use %s or %s", req.Model, license.ModelHW, license.ModelVM)
	}

	var rep *reply
	err = p.update(func(now time.Time) error {
		if stale(req.Time, now) {
			rep = p.staleReply(req.Request, "", now)
			return nil
		}
		key, err := license.ParseKey(req.Key, p.keyring, license.KeyCheck{Now: now, Model: req.Model})
		if err != nil {
			return &apiError{status: http.StatusBadRequest, code: protocol.CodeInvalidKey, msg: err.Error()}
		}
		r := p.byID[key.PBX.ID]
		if r != nil {
			p.settle(r, now)
		}
		switch {
		case r == nil:
			return &apiError{status: http.StatusBadRequest, code: protocol.CodeInvalidKey,
				msg: fmt.Sprintf("the portal knows no PBX %q: create it on the portal and use its key", key.PBX.Name)}
		case r.deleted():
			return &apiError{status: http.StatusBadRequest, code: protocol.CodeInvalidKey,
				msg: fmt.Sprintf("PBX %q was deleted on the portal: create a new PBX and use its key", r.Name)}
		case key.ID != r.KeyID:
			return &apiError{status: http.StatusBadRequest, code: protocol.CodeInvalidKey,
				msg: fmt.Sprintf("this key of PBX %q has been replaced by a newer one: use the newest key, or %s",
					r.Name, license.NewKeyFix(key.PBX))}
		case r.Device != nil && r.Device.DeviceID != kid:
			return &apiError{status: http.StatusConflict, code: protocol.CodeBoundElsewhere,
				msg: fmt.Sprintf("PBX %q is bound to another appliance since %s; a hardware replacement needs the portal to re-bind it (pbx-portal-sim pbx rebind %s)",
					r.Name, r.Device.BoundAt.Format(time.RFC3339), r.Name)}
		}
		// Only now is the request known to come from the holder of this
		// PBX's current key: an unauthenticated one leaves no trace, so a
		// flood of them neither grows nor rewrites the portal's state.
		if err := p.useNonce(kid, req.Nonce, now); err != nil {
			return err
		}
		switch {
		case r.Device == nil:
			r.Device = &binding{
				DeviceID:     kid,
				PublicKey:    dev,
				Fingerprint:  req.Fingerprint,
				Model:        req.Model,
				Serial:       req.Serial,
				Overrides:    req.Overrides,
				AgentVersion: req.AgentVersion,
				BoundAt:      now,
			}
			r.AgentVersion = req.AgentVersion
			p.devices[kid] = dev
			p.markDirty()
			p.log.Info("PBX bound", "pbx", r.Name, "pbx_id", r.ID, "device", kid, "overrides", req.Overrides)
		default:
			p.log.Info("PBX activated again by its appliance", "pbx", r.Name, "device", kid)
		}
		lic, err := p.signLicense(r.License)
		if err != nil {
			return err
		}
		rep = p.okReply(req.Request, r, lic, now)
		rep.answer.License = lic
		// An activation opens the heartbeat chain afresh: its answer is
		// the appliance's first link.
		if rep.signed, err = p.signAnswer(rep, replayOld); err != nil {
			return err
		}
		r.Chain.Restart(rep.signed)
		r.Cloned = nil
		r.StatedInterval = rep.answer.Interval
		p.markDirty()
		return nil
	})
	return rep, err
}

// heartbeat records an appliance's report and answers with the PBX's
// current licence revision, digest and standing, signed. What the request
// claims to hold decides only whether the licence itself is left out (the
// appliance already has it); the agent checks the signed statement. A
// compact heartbeat (protocol.TypeCompactHeartbeat) that the portal has
// nothing to add to gets a "same" answer (protocol.TypeSame).
func (p *Portal) heartbeat(_ context.Context, body string, replayOld bool) (*reply, error) {
	_, typ, err := license.PeekHeader(body)
	if err != nil {
		return nil, errBadRequest("the request is not a valid compact JWS: %v", err)
	}
	var hb heartbeatIn
	if typ == protocol.TypeCompactHeartbeat && !p.fullOnly {
		hb, err = p.readCompactHeartbeat(body)
	} else {
		hb, err = p.readHeartbeat(body)
	}
	if err != nil {
		return nil, err
	}
	if hb.usage != nil {
		if err := hb.usage.Validate(); err != nil {
			return nil, errBadRequest("usage: %v", err)
		}
	}
	if hb.overuse != nil {
		if err := hb.overuse.Validate(); err != nil {
			return nil, errBadRequest("overuse: %v", err)
		}
	}
	if len(hb.results) > protocol.MaxResults {
		return nil, errBadRequest("%d results, more than %d", len(hb.results), protocol.MaxResults)
	}

	var rep *reply
	err = p.update(func(now time.Time) error {
		var err error
		rep, err = p.heartbeatLocked(hb, replayOld, now)
		return err
	})
	if rep != nil {
		rep.bare = hb.compact != ""
	}
	return rep, err
}

// heartbeatIn is a heartbeat request, full or compact, as the portal acts
// on it.
type heartbeatIn struct {
	req     protocol.Request
	kid     string // the device key that signed it
	pbxID   string // as a full request names it; a compact one names none
	held    protocol.Held
	link    protocol.Link
	fetch   bool
	results []protocol.CommandResult
	// What the appliance reports; nil (or "") in a compact request when
	// unchanged since the last heartbeat acknowledged.
	usage, overuse *license.Counts
	state, version *string
	// compact is the compact request as received, which a "same" answer
	// echoes; empty for a full request.
	compact string
}

// readHeartbeat verifies a full heartbeat (protocol.TypeHeartbeat).
func (p *Portal) readHeartbeat(body string) (heartbeatIn, error) {
	var req protocol.HeartbeatRequest
	kid, err := p.verifyDeviceRequest(body, protocol.TypeHeartbeat, &req, &req.Request) // commands.go
	if err != nil {
		return heartbeatIn{}, err
	}
	// A full heartbeat reports everything: absent usage is "not counted".
	return heartbeatIn{req: req.Request, kid: kid, pbxID: req.PBXID,
		held: protocol.Held{Revision: req.Revision, Digest: req.Digest}, link: protocol.Link{Digest: req.Link, Seq: req.Seq},
		fetch: req.Fetch, results: req.Results, usage: &req.Usage, overuse: &req.Overuse,
		state: &req.State, version: &req.AgentVersion}, nil
}

// readCompactHeartbeat verifies a compact heartbeat and finds the PBX by
// the device key that signed it.
func (p *Portal) readCompactHeartbeat(body string) (heartbeatIn, error) {
	kid, _, err := license.PeekHeader(body)
	if err != nil {
		return heartbeatIn{}, errBadRequest("the request is not a valid compact JWS: %v", err)
	}
	p.mu.Lock()
	dev := p.devices[kid]
	pbxID, ambiguous := p.pbxOfDeviceLocked(kid)
	p.mu.Unlock()
	if dev == nil {
		return heartbeatIn{}, &apiError{status: http.StatusUnauthorized, code: protocol.CodeUnknownDevice,
			msg: fmt.Sprintf("the portal knows no appliance with device key %q: activate first", kid)}
	}
	h, err := protocol.VerifyCompactHeartbeat(body, dev)
	if err != nil {
		return heartbeatIn{}, requestError(err, kid)
	}
	if ambiguous {
		return heartbeatIn{}, errBadRequest("device key %q is bound to more than one PBX, so a compact heartbeat does not say which: send a full heartbeat (%s)",
			kid, protocol.TypeHeartbeat)
	}
	hb := heartbeatIn{req: h.Request, kid: kid, pbxID: pbxID, held: h.Held, link: h.Link, fetch: h.Report.Fetch,
		results: h.Report.Results, usage: h.Report.Usage, overuse: h.Report.Overuse, compact: body}
	if h.Report.State != "" {
		hb.state = &h.Report.State
	}
	if h.Report.AgentVersion != "" {
		hb.version = &h.Report.AgentVersion
	}
	return hb, checkRequest(hb.req)
}

// pbxOfDeviceLocked is the PBX a device key speaks for: the one it is
// bound to, else the one it was bound to before a re-bind (which is told
// its PBX is gone). ambiguous when it is bound to several. Callers hold
// p.mu.
func (p *Portal) pbxOfDeviceLocked(kid string) (id string, ambiguous bool) {
	var bound, former []string
	for _, r := range p.byID {
		switch {
		case r.Device != nil && r.Device.DeviceID == kid:
			bound = append(bound, r.ID)
		case r.formerDevice(kid):
			former = append(former, r.ID)
		}
	}
	switch {
	case len(bound) == 1:
		return bound[0], false
	case len(bound) > 1:
		return "", true
	case len(former) > 0:
		return slices.Min(former), false
	}
	return "", false
}

// heartbeatLocked acts on a verified heartbeat. Callers hold p.mu, through
// p.update.
func (p *Portal) heartbeatLocked(hb heartbeatIn, replayOld bool, now time.Time) (*reply, error) {
	req, kid := hb.req, hb.kid
	if stale(req.Time, now) {
		return p.staleReply(req, hb.pbxID, now), nil
	}
	if err := p.useNonce(kid, req.Nonce, now); err != nil {
		return nil, err
	}
	r := p.byID[hb.pbxID]
	if r != nil {
		p.settle(r, now)
	}
	bound := r != nil && r.Device != nil && r.Device.DeviceID == kid
	switch {
	case !bound && r != nil && r.formerDevice(kid):
		p.log.Info("told a former appliance its PBX was re-bound", "pbx", r.Name, "device", kid)
		return p.goneReply(req, r.ID, protocol.GoneRebound, now), nil
	case !bound:
		return nil, &apiError{status: http.StatusUnauthorized, code: protocol.CodeUnknownDevice,
			msg: fmt.Sprintf("appliance %q holds no PBX %q", kid, hb.pbxID)}
	case r.deleted():
		p.log.Info("told an appliance its PBX was deleted", "pbx", r.Name, "device", kid)
		return p.goneReply(req, r.ID, protocol.GoneDeleted, now), nil
	}
	sent := hb.link
	verdict := r.Chain.Judge(sent.Digest)
	if verdict == protocol.LinkCloned && r.Cloned == nil {
		t := now
		r.Cloned = &t
		p.markDirty()
		p.log.Warn("two copies of one appliance: both advance the heartbeat chain; refused until the partner re-binds or resyncs the PBX",
			"pbx", r.Name, "device", kid, "seq", sent.Seq)
	}
	if r.Cloned != nil {
		return &reply{answer: protocol.Answer{Status: protocol.StatusRefused, Reason: protocol.RefusedCloned,
			Time: now, Nonce: req.Nonce, PBXID: r.ID, Link: sent.Digest, Seq: sent.Seq}}, nil
	}
	t := now
	r.LastHeartbeat = &t
	if hb.usage != nil {
		r.LastUsage = *hb.usage
	}
	if hb.overuse != nil {
		r.LastOveruse = *hb.overuse
	}
	if hb.state != nil {
		r.LastState = *hb.state
	}
	if hb.version != nil {
		r.AgentVersion = *hb.version
		r.Device.AgentVersion = *hb.version
	}
	p.markDirty()
	lic, err := p.signLicense(r.License)
	if err != nil {
		return nil, err
	}
	rep := p.okReply(req, r, lic, now)
	rep.answer.Link, rep.answer.Seq = sent.Digest, sent.Seq
	rep.answer.Acked = p.recordResultsLocked(r, hb.results, now)
	rep.answer.Commands = p.commandsForLocked(r, now)
	if hb.fetch || hb.held.Revision != r.License.Revision || hb.held.Digest != rep.answer.Digest {
		rep.answer.License = lic
	}
	forked := verdict == protocol.LinkForked
	if forked {
		rep.answer.Chain = protocol.ChainReanchored
		r.LastFork = &ForkRecord{At: now, ApplianceSeq: sent.Seq, PortalSeq: r.Chain.HeadSeq}
		p.log.Warn("heartbeat chain forked: the appliance came back with a state from the past (rolled back, restored or reverted); re-anchored",
			"pbx", r.Name, "device", kid, "appliance_seq", sent.Seq, "portal_seq", r.Chain.HeadSeq)
	}
	if hb.compact != "" && same(rep.answer, r) && !replayOld {
		rep.signed, err = protocol.SignSame(p.signer, now, hb.compact)
	} else {
		rep.signed, err = p.signAnswer(rep, replayOld)
		r.StatedInterval = rep.answer.Interval
	}
	if err != nil {
		return nil, err
	}
	r.Chain.Advance(sent, rep.signed, forked)
	p.log.Debug("heartbeat", "pbx", r.Name, "state", r.LastState, "revision_held", hb.held.Revision,
		"licence_sent", rep.answer.License != "", "seq", sent.Seq, "compact", hb.compact != "")
	return rep, nil
}

// same reports whether an ok answer to a compact heartbeat says nothing
// the request did not: no licence, command, acknowledgement or chain
// note, an active standing, and the interval last stated to the
// appliance. A "same" answer then stands for it.
func same(a protocol.Answer, r *pbxRecord) bool {
	return a.Status == protocol.StatusOK && a.License == "" && len(a.Commands) == 0 && len(a.Acked) == 0 &&
		a.Chain == "" && !a.Pending && a.Standing == protocol.StandingActive && a.Interval == r.StatedInterval
}

// okReply is an ok answer stating the PBX's current licence, lic signed.
func (p *Portal) okReply(req protocol.Request, r *pbxRecord, lic string, now time.Time) *reply {
	standing := protocol.StandingActive
	if r.License.Suspended {
		standing = protocol.StandingSuspended
	}
	rep := &reply{answer: protocol.Answer{
		Status:   protocol.StatusOK,
		Time:     now,
		Nonce:    req.Nonce,
		PBXID:    r.ID,
		Interval: license.Seconds(p.interval / time.Second),
		Revision: r.License.Revision,
		Digest:   protocol.Digest(lic),
		Standing: standing,
	}}
	if !p.fullOnly {
		rep.answer.Formats = []string{protocol.TypeCompactHeartbeat}
	}
	if r.Previous != nil {
		prev := *r.Previous
		rep.previous = &prev
	}
	return rep
}

func (p *Portal) staleReply(req protocol.Request, pbxID string, now time.Time) *reply {
	p.log.Info("stale request", "pbx_id", pbxID, "request_time", req.Time, "portal_time", now)
	return &reply{answer: protocol.Answer{Status: protocol.StatusStale, Time: now, Nonce: req.Nonce, PBXID: pbxID}}
}

func (p *Portal) goneReply(req protocol.Request, pbxID, reason string, now time.Time) *reply {
	return &reply{answer: protocol.Answer{Status: protocol.StatusGone, Time: now, Nonce: req.Nonce, PBXID: pbxID, Reason: reason}}
}

// stale reports a request time outside the freshness window.
func stale(t, now time.Time) bool {
	d := t.Sub(now)
	return d > protocol.FreshnessWindow || d < -protocol.FreshnessWindow
}

func checkRequest(req protocol.Request) error {
	if req.Nonce == "" || len(req.Nonce) > maxNonceLen {
		return errBadRequest("the request needs a nonce of 1 to %d characters", maxNonceLen)
	}
	return nil
}

// requestError maps a failed request verification to a refusal: a bad
// signature is 401, a malformed request 400.
func requestError(err error, kid string) error {
	switch {
	case errors.Is(err, license.ErrBadSignature), errors.Is(err, license.ErrUnknownSigner):
		return &apiError{status: http.StatusUnauthorized, code: protocol.CodeBadSignature,
			msg: fmt.Sprintf("the request's signature does not verify with device key %q", kid)}
	case errors.Is(err, license.ErrWrongType):
		return errBadRequest("wrong endpoint for this request: %v", err)
	}
	return errBadRequest("malformed request: %v", err)
}

// claimedDeviceKey reads the device key an activation request carries,
// without verifying anything: the signature is checked with it next.
func claimedDeviceKey(body string) (ed25519.PublicKey, error) {
	parts := strings.Split(body, ".")
	if len(parts) != 3 {
		return nil, errBadRequest("the request is not a compact JWS (HEADER.PAYLOAD.SIGNATURE)")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, errBadRequest("the request's payload is not base64url")
	}
	var claim struct {
		DeviceKey []byte `json:"device_key"`
	}
	if err := json.Unmarshal(payload, &claim); err != nil {
		return nil, errBadRequest("the request's payload is not an activation request: %v", err)
	}
	if len(claim.DeviceKey) != ed25519.PublicKeySize {
		return nil, errBadRequest("device_key must be an Ed25519 public key (%d bytes), got %d bytes",
			ed25519.PublicKeySize, len(claim.DeviceKey))
	}
	return slices.Clone(claim.DeviceKey), nil
}
