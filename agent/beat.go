package agent

import (
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"reflect"
	"time"

	"github.com/pbx-agent/pbx-agent/pkg/protocol"
	"github.com/pbx-agent/pbx-agent/pkg/slotfile"
)

// The heartbeat record (heartbeat.rec in the state folder) keeps what an
// unchanged heartbeat changes in the state: the chain link and the
// portal's answer, with the licence clock's mark. It is rewritten in
// place (pkg/slotfile): one synced write per heartbeat, where saving the
// state file costs a new file, two syncs and a rename. Anything else that
// changes (a licence, a refusal, an interval, a deletion) saves the state
// file, whose generation then passes the record's.
const (
	beatFileName = "heartbeat.rec"
	beatMagic    = "PBXBEAT1"
	beatSlotSize = 4096 // a same answer and its request take about 450 bytes
)

// beat is the heartbeat record's content.
type beat struct {
	// Gen is the state's generation when it was written: the record
	// counts at load only when it is newer than the state file.
	Gen uint64 `json:"gen"`
	// Licence is the digest of the licence it goes with: a record is
	// never applied to another licence.
	Licence   string        `json:"licence"`
	Chain     protocol.Link `json:"chain"`
	Answer    string        `json:"answer,omitempty"`
	AnswerTo  string        `json:"answer_to,omitempty"`
	HighWater time.Time     `json:"clock_high_water"`
}

func beatOf(st persisted) beat {
	return beat{Gen: st.Gen, Licence: protocol.Digest(st.License), Chain: st.Chain, Answer: st.Answer,
		AnswerTo: st.AnswerTo, HighWater: st.HighWater}
}

// onlyBeat reports whether next differs from prev only in what the
// heartbeat record holds.
func onlyBeat(prev, next persisted) bool {
	if prev.License == "" {
		return false
	}
	for _, st := range []*persisted{&prev, &next} {
		st.Gen, st.Chain, st.Answer, st.AnswerTo, st.HighWater = 0, protocol.Link{}, "", "", time.Time{}
	}
	return reflect.DeepEqual(prev, next)
}

// openBeats opens the heartbeat record and applies it to st when it is
// newer than the state file and goes with its licence. A record that
// cannot be opened or read leaves every save to the state file, logged.
func openBeats(stateDir string, st *persisted, log *slog.Logger) *slotfile.File {
	f, err := slotfile.Open(filepath.Join(stateDir, beatFileName), beatMagic, beatSlotSize)
	if err != nil {
		log.Warn("the heartbeat record cannot be used: every heartbeat saves the state file", "err", err)
		return nil
	}
	data, err := f.Read()
	if errors.Is(err, slotfile.ErrEmpty) {
		return f
	}
	var b beat
	if err == nil {
		err = json.Unmarshal(data, &b)
	}
	switch {
	case err != nil:
		log.Warn("the heartbeat record is damaged: the state file's chain link and answer stand", "err", err)
	case b.Gen > st.Gen && st.License != "" && b.Licence == protocol.Digest(st.License):
		st.Gen, st.Chain, st.Answer, st.AnswerTo = b.Gen, b.Chain, b.Answer, b.AnswerTo
		if b.HighWater.After(st.HighWater) {
			st.HighWater = b.HighWater
		}
	}
	return f
}

// saveBeat writes what st holds of the heartbeat record.
func (l *licence) saveBeat(st persisted) error {
	data, err := json.Marshal(beatOf(st))
	if err != nil {
		return err
	}
	return l.beats.Write(data)
}
