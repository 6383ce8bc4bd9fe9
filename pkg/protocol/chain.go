package protocol

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/pbx-agent/pbx-agent/pkg/license"
)

// The heartbeat chain makes a rolled-back, restored or copied appliance
// state visible to the portal. Each heartbeat carries the Digest of the
// last answer the appliance accepted (its link) and how many it has
// accepted (its sequence); each answer echoes them, and its own Digest is
// the next link. The portal keeps the head of the chain (its latest
// answer) and the link before it, and accepts either, so an answer lost on
// the way or a crash before it was saved never forks anything. Any other
// link is a fork: a state from the past. The portal records it, tells the
// partner and continues from it. Two branches that both keep advancing are
// copies of one appliance: the portal refuses them (StatusRefused,
// RefusedCloned) until the partner resolves it.

// DigestBytes is how much of a SHA-256 a Digest keeps: 128 bits, enough
// that nobody finds a second document with the same digest.
const DigestBytes = 16

// Digest names a signed document (a licence, an answer) on the wire: the
// first DigestBytes of the SHA-256 of its compact form, base64url.
func Digest(compact string) string {
	sum := sha256.Sum256([]byte(compact))
	return base64.RawURLEncoding.EncodeToString(sum[:DigestBytes])
}

// Link is the appliance's end of the heartbeat chain. The zero Link is a
// chain not started: an appliance activated before chains existed.
type Link struct {
	Digest string `json:"link,omitempty"` // Digest of the last answer accepted
	Seq    uint64 `json:"seq,omitempty"`  // answers accepted so far
}

// Next is the link after accepting the answer whose compact form is compact.
func (l Link) Next(compact string) Link { return Link{Digest: Digest(compact), Seq: l.Seq + 1} }

// Held is the licence an appliance holds, as an answer is checked against.
type Held struct {
	Revision int64
	Digest   string // Digest of the signed licence
}

// HeldLicence returns what an appliance holding the signed licence
// compact, of revision rev, holds.
func HeldLicence(rev int64, compact string) Held { return Held{Revision: rev, Digest: Digest(compact)} }

// Matches reports whether an ok answer states the licence held as the
// PBX's current one. Only such an answer counts as a success: any other
// says the appliance holds something the portal no longer stands behind.
func (a *Answer) Matches(h Held) bool {
	return a.Status == StatusOK && a.Revision == h.Revision && a.Digest == h.Digest && a.Standing != ""
}

// CheckEcho checks that an answer continues the chain from the link the
// request carried. Refusals are *license.Error values.
func (a *Answer) CheckEcho(sent Link) error {
	if a.Status == StatusStale || a.Status == StatusGone {
		return nil // nothing was chained: only the time was judged, or the chain ends
	}
	if a.Link != sent.Digest || a.Seq != sent.Seq {
		return &license.Error{Doc: "portal answer", Kind: license.ErrInvalid, Detail: fmt.Sprintf(
			"it continues the heartbeat chain from link %q (sequence %d), not from the %q (sequence %d) this appliance sent",
			a.Link, a.Seq, sent.Digest, sent.Seq)}
	}
	return nil
}

// PortalChain is the portal's end of one PBX's heartbeat chain.
type PortalChain struct {
	Head      string   `json:"head,omitempty"`      // Digest of the latest answer sent
	HeadSeq   uint64   `json:"head_seq,omitempty"`  // its sequence number
	Confirmed string   `json:"confirmed,omitempty"` // the link the appliance last proved it holds
	Abandoned []string `json:"abandoned,omitempty"` // heads left behind at the last forks, newest last
	Forks     int      `json:"forks,omitempty"`     // forks re-anchored so far
}

// maxAbandoned bounds the heads a portal remembers from past forks.
const maxAbandoned = 8

// Verdict is what a portal makes of a heartbeat's link.
type Verdict int

const (
	// LinkAccepted: the link is the head or the one before it.
	LinkAccepted Verdict = iota
	// LinkForked: a link from the past (a rolled-back or restored state).
	// The portal re-anchors the chain on it and tells the partner.
	LinkForked
	// LinkCloned: a link on a branch a fork left behind, still advancing:
	// two copies of one appliance. The portal refuses them.
	LinkCloned
)

// Judge classifies the link of a request. A chain with no head yet (a PBX
// activated before chains existed) accepts any link and starts from it.
func (c *PortalChain) Judge(link string) Verdict {
	switch {
	case c.Head == "", link == c.Head, link != "" && link == c.Confirmed:
		return LinkAccepted
	case link != "" && slices.Contains(c.Abandoned, link):
		return LinkCloned
	}
	return LinkForked
}

// Advance records an answer sent to a request with link sent, after Judge
// accepted it or the portal re-anchored a fork (forked true): the sent link
// is now proven held, and the answer is the new head.
func (c *PortalChain) Advance(sent Link, answer string, forked bool) {
	if forked {
		for _, h := range []string{c.Confirmed, c.Head} {
			if h != "" && h != sent.Digest && !slices.Contains(c.Abandoned, h) {
				c.Abandoned = append(c.Abandoned, h)
			}
		}
		if n := len(c.Abandoned); n > maxAbandoned {
			c.Abandoned = slices.Clone(c.Abandoned[n-maxAbandoned:])
		}
		c.Forks++
	}
	c.Confirmed = sent.Digest
	c.Head, c.HeadSeq = Digest(answer), sent.Seq+1
}

// Restart starts the chain again from an answer that opens it (an
// activation), keeping the count of forks.
func (c *PortalChain) Restart(answer string) {
	*c = PortalChain{Head: Digest(answer), HeadSeq: 1, Forks: c.Forks}
}
