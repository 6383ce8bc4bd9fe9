package strictjson

import (
	"encoding/json"
	"testing"
)

// benchPayload is the size and shape of a signed licence document.
const benchPayload = `{"v":1,"pbx":{"id":"pbx-42","name":"acme.example","model":"WPBX-VM"},"revision":7,"iat":"2026-11-27T12:00:00Z","term":"monthly","term_end":"2026-11-30T23:59:59Z","profiles":{"pbx-basic":3,"uc-premium":10},"offline_grace_seconds":2592000,"revoked_kids":["portal-0"]}`

type benchDoc struct {
	Version  int            `json:"v"`
	PBX      inner          `json:"pbx"`
	Revision int64          `json:"revision"`
	IssuedAt string         `json:"iat"`
	Term     string         `json:"term"`
	TermEnd  string         `json:"term_end"`
	Counts   map[string]int `json:"profiles"`
	Offline  int64          `json:"offline_grace_seconds"`
	Revoked  []string       `json:"revoked_kids"`
}

// BenchmarkUnmarshal compares json.Unmarshal (the baseline) with the
// pre-scan alone and with Unmarshal, the pre-scan and json.Unmarshal.
func BenchmarkUnmarshal(b *testing.B) {
	data := []byte(benchPayload)
	b.Run("baseline=json.Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var d benchDoc
			if err := json.Unmarshal(data, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Check", func(b *testing.B) {
		for b.Loop() {
			if err := Check(data, &benchDoc{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Check-untyped", func(b *testing.B) {
		for b.Loop() {
			if err := Check(data, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Unmarshal", func(b *testing.B) {
		for b.Loop() {
			var d benchDoc
			if err := Unmarshal(data, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
}
