package strictjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type embedded struct {
	Nonce string `json:"nonce"`
}

type doc struct {
	embedded
	Revision int64            `json:"revision"`
	PBX      inner            `json:"pbx"`
	PBXPtr   *inner           `json:"pbx_ptr,omitempty"`
	List     []inner          `json:"list,omitempty"`
	Counts   map[string]int   `json:"counts,omitempty"`
	ByName   map[string]inner `json:"by_name,omitempty"`
	At       time.Time        `json:"at"`
	Any      any              `json:"any,omitempty"`
	Untagged string
	Skipped  string `json:"-"`
	// Two names a struct may legitimately know that differ only in case.
	Lower string `json:"k,omitempty"`
	Upper string `json:"K,omitempty"`
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"duplicate", `{"revision":1,"revision":9}`, `duplicate member "revision"`},
		{"case variant beside the name", `{"revision":1,"Revision":9}`, `member "Revision" differs only in case from member "revision"`},
		{"case variant alone", `{"Revision":9}`, `member "Revision" differs only in case from "revision"`},
		{"escaped duplicate", `{"revision":1,"\u0072evision":9}`, `duplicate member "revision"`},
		{"nested duplicate", `{"pbx":{"id":"a","id":"b"}}`, `duplicate member "id" in "pbx"`},
		{"nested case variant", `{"pbx":{"ID":"b"}}`, `member "ID" differs only in case from "id" in "pbx"`},
		{"duplicate object", `{"pbx":{"id":"a"},"pbx":{"id":"b"}}`, `duplicate member "pbx"`},
		{"through a pointer", `{"pbx_ptr":{"Name":"x"}}`, `member "Name" differs only in case from "name" in "pbx_ptr"`},
		{"in an array element", `{"list":[{"id":"a"},{"iD":"b"}]}`, `member "iD" differs only in case from "id" in "list[1]"`},
		{"map key duplicate", `{"counts":{"basic":1,"basic":2}}`, `duplicate member "basic" in "counts"`},
		{"map key case pair", `{"counts":{"basic":1,"Basic":2}}`, `member "Basic" differs only in case from member "basic" in "counts"`},
		{"map value struct", `{"by_name":{"x":{"NAME":"y"}}}`, `member "NAME" differs only in case from "name" in "by_name.x"`},
		{"promoted field", `{"Nonce":"n"}`, `member "Nonce" differs only in case from "nonce"`},
		{"untagged field", `{"untagged":"x"}`, `member "untagged" differs only in case from "Untagged"`},
		{"kelvin sign folds to k", "{\"\u212a\":\"x\"}", `differs only in case from "k"`},
		{"long s folds to s", "{\"s\":1,\"\u017f\":2}", `differs only in case from member "s"`},
		// Even a struct that knows both spellings gets one of them only:
		// another reader may fold them together.
		{"two known spellings", `{"k":"lower","K":"upper"}`, `member "K" differs only in case from member "k"`},
		{"unknown members too", `{"extra":1,"EXTRA":2}`, `member "EXTRA" differs only in case from member "extra"`},
		{"inside an any", `{"any":{"a":1,"a":2}}`, `duplicate member "a" in "any"`},
		{"deep in unknown members", `{"x":[[{"y":{"z":1,"Z":2}}]]}`, `in "x[0][0].y"`},
		{"trailing value", `{"revision":1}{"revision":9}`, ErrTrailingData.Error()},
		{"trailing garbage", `{"revision":1} x`, "invalid character"},
		{"truncated", `{"revision":1`, "unexpected EOF"},
		{"empty", ``, "unexpected EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var d doc
			err := Check([]byte(tt.in), &d)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check(%s) = %v, want an error with %q", tt.in, err, tt.want)
			}
			if err := Unmarshal([]byte(tt.in), &d); err == nil {
				t.Fatalf("Unmarshal(%s) accepted it", tt.in)
			}
		})
	}
}

func TestCheckAccepts(t *testing.T) {
	for _, in := range []string{
		`{"revision":1,"pbx":{"id":"a","name":"b"},"nonce":"n","Untagged":"u"}`,
		`{"list":[{"id":"a"},{"id":"a"}],"counts":{"basic":1,"premium":2}}`,
		// time.Time decodes itself: the string is not looked into.
		`{"at":"2026-11-27T12:00:00Z"}`,
		// A struct that knows two spellings takes each exactly.
		`{"k":"lower"}`, `{"K":"upper"}`,
		// The same name in sibling objects is no duplicate.
		`{"pbx":{"id":"a"},"pbx_ptr":{"id":"a"}}`,
		// json:"-" leaves "Skipped" unknown: ignored, as encoding/json does.
		`{"Skipped":"x"}`,
		` {"revision":1} ` + "\n",
		`"a string"`, `[1,2]`, `null`, `12345678901234567890123`,
	} {
		var d doc
		if err := Unmarshal([]byte(in), &d); err != nil {
			var ute *json.UnmarshalTypeError
			if errors.As(err, &ute) {
				continue // a type error of encoding/json itself, after Check passed
			}
			t.Errorf("Unmarshal(%s) = %v", in, err)
		}
	}
	var d doc
	if err := Unmarshal([]byte(`{"K":"upper"}`), &d); err != nil || d.Lower != "" || d.Upper != "upper" {
		t.Errorf("one of two known spellings: %+v, %v", d, err)
	}
}

func TestCheckWithoutTarget(t *testing.T) {
	if err := Check([]byte(`{"Revision":9}`), nil); err != nil {
		t.Errorf("without a target a lone name is fine: %v", err)
	}
	err := Check([]byte(`{"a":{"b":[{"revision":1,"Revision":9}]}}`), nil)
	var me *MemberError
	if !errors.As(err, &me) || me.Path != "a.b[0]" || me.Name != "Revision" || me.Other != "revision" {
		t.Fatalf("nested case pair without a target: %#v", err)
	}
}

func TestUnmarshalKnown(t *testing.T) {
	var d struct {
		ID string `json:"id"`
	}
	if err := UnmarshalKnown([]byte(`{"id":"a","extra":1}`), &d); err == nil || !strings.Contains(err.Error(), `unknown field "extra"`) {
		t.Fatalf("unknown member: %v", err)
	}
	if err := UnmarshalKnown([]byte(`{"id":"a"}`), &d); err != nil || d.ID != "a" {
		t.Fatalf("known member: %+v, %v", d, err)
	}
	if err := UnmarshalKnown([]byte(`{"id":"a"} {"id":"b"}`), &d); !errors.Is(err, ErrTrailingData) {
		t.Fatalf("second value: %v", err)
	}
}

// TestFoldKeyAgreesWithEqualFold checks the map key against the rule it
// stands for, on the runes where folding is not plain ASCII case.
func TestFoldKeyAgreesWithEqualFold(t *testing.T) {
	words := []string{"k", "K", "\u212a", "s", "S", "\u017f", "ss", "\u00df", "\u1e9e", "i", "I", "\u0130", "\u0131",
		"\u03a3", "\u03c3", "\u03c2", "id", "ID", "\ufffd", "a\u212ab", "AKB"}
	for _, a := range words {
		for _, b := range words {
			if got, want := foldKey(a) == foldKey(b), strings.EqualFold(a, b); got != want {
				t.Errorf("foldKey(%q) == foldKey(%q) is %v; EqualFold says %v", a, b, got, want)
			}
		}
	}
}

// FuzzCheck holds Check to its promise: whatever it accepts, encoding/json
// reads the same as a parser that matches names exactly and refuses
// duplicates (go-jose's), because no two names of an object fold together.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"revision":1}`, `{"revision":1,"Revision":9}`, `{"pbx":{"id":"a","id":"b"}}`,
		`{"list":[{"id":"a"}]}`, `[{"a":1},{"A":2}]`, "{\"\u212a\":1}", `{"a":1}{}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var d doc
		if err := Check(data, &d); err != nil {
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		var generic any
		if err := json.Unmarshal(data, &generic); err != nil {
			t.Fatalf("accepted %q, which does not decode: %v", data, err)
		}
		if err := Check(data, nil); err != nil {
			t.Fatalf("accepted against a struct but refused without one: %v", err)
		}
		walk(t, generic)
	})
}

// walk fails on an object with two keys equal under EqualFold: after
// Check, decoding into a map must have kept every member.
func walk(t *testing.T, v any) {
	switch v := v.(type) {
	case map[string]any:
		for a := range v {
			for b := range v {
				if a != b && strings.EqualFold(a, b) {
					t.Fatalf("accepted members %q and %q", a, b)
				}
			}
			walk(t, v[a])
		}
	case []any:
		for _, e := range v {
			walk(t, e)
		}
	}
}
