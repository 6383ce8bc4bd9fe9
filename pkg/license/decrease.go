package license

import (
	"maps"
	"time"
)

// Decrease is a lowered count of one profile, as seen between two licence
// revisions: From licences before, To after, At the lowering revision's
// signed issue time (the portal's, however late the agent took it).
type Decrease struct {
	At       time.Time `json:"at"`
	From     int       `json:"from"`
	To       int       `json:"to"`
	Revision int64     `json:"revision"` // the revision that lowered it
}

// Decreases is, per profile, the last decrease still in force: the
// smallest history that tells an over-use after a decrease from users
// added beyond the licence.
type Decreases map[Profile]Decrease

// NoteRevision returns the history after next replaced prev, taken at
// time at (which dates the decrease when next carries no issue time): a
// profile whose count went down records the decrease; a profile raised
// back to at least its count before the decrease forgets it, as its
// over-use (if any) no longer comes from that decrease. The receiver is
// not changed. An empty history is nil.
func (h Decreases) NoteRevision(prev, next *Document, at time.Time) Decreases {
	if prev == nil || next == nil {
		return h
	}
	if !next.IssuedAt.IsZero() {
		at = next.IssuedAt
	}
	out := maps.Clone(h)
	if out == nil {
		out = Decreases{}
	}
	for _, p := range Profiles() {
		before, after := prev.Counts[p.ID], next.Counts[p.ID]
		switch d, held := out[p.ID]; {
		case after < before:
			out[p.ID] = Decrease{At: at.UTC(), From: before, To: after, Revision: next.Revision}
		case held && after >= d.From:
			delete(out, p.ID)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
