package strictjson

import (
	"encoding/json"
	"errors"
	"fmt"
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

// TestCheckLargeObjects crosses the size at which names are looked up by
// fold key rather than compared one by one.
func TestCheckLargeObjects(t *testing.T) {
	for _, n := range []int{15, 16, 17, 40} {
		var b strings.Builder
		b.WriteString(`{"counts":{`)
		for i := range n {
			fmt.Fprintf(&b, `"p%d":%d,`, i, i)
		}
		ok := b.String()[:b.Len()-1] + "}}"
		if err := Check([]byte(ok), &doc{}); err != nil {
			t.Errorf("%d distinct members: %v", n, err)
		}
		for _, extra := range []string{`"p0":1`, `"P0":1`, fmt.Sprintf(`"P%d":1`, n-1)} {
			bad := b.String() + extra + "}}"
			if err := Check([]byte(bad), &doc{}); err == nil || !strings.Contains(err.Error(), `in "counts"`) {
				t.Errorf("%d members and %s: %v", n, extra, err)
			}
		}
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

// FuzzCheck holds Check to its promise: without a target it accepts
// exactly the single JSON values in which no object has two names equal
// under strings.EqualFold, as a plain token-by-token reader finds them;
// and what it accepts against a struct it also accepts without one.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{`{"revision":1}`, `{"revision":1,"Revision":9}`, `{"pbx":{"id":"a","id":"b"}}`,
		`{"list":[{"id":"a"}]}`, `[{"a":1},{"A":2}]`, "{\"\u212a\":1}", `{"a":1}{}`, `{"a\u0041":1,"aa":2}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		want := reference(data)
		if got := Check(data, nil); (got == nil) != (want == nil) {
			t.Fatalf("Check(%q, nil) = %v; the token reader says %v", data, got, want)
		}
		var d doc
		if err := Check(data, &d); err != nil {
			return
		}
		if want != nil {
			t.Fatalf("accepted %q against a struct, which the token reader refuses: %v", data, want)
		}
	})
}

// reference is the rule read with encoding/json's Decoder.Token, slowly
// and plainly: one value, no two names of an object equal under EqualFold.
func reference(data []byte) error {
	if !json.Valid(data) {
		return errors.New("not one JSON value")
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	type obj struct {
		names   []string
		wantKey bool
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err != nil {
			return nil // io.EOF: json.Valid vouched for the rest
		}
		var top *obj
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		if top != nil && top.wantKey {
			if tok == json.Delim('}') {
				stack = stack[:len(stack)-1]
				if len(stack) > 0 && stack[len(stack)-1] != nil {
					stack[len(stack)-1].wantKey = true
				}
				continue
			}
			name := tok.(string)
			for _, n := range top.names {
				if strings.EqualFold(n, name) {
					return errors.New("names " + n + " and " + name)
				}
			}
			top.names = append(top.names, name)
			top.wantKey = false
			continue
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, &obj{wantKey: true})
			continue
		case json.Delim('['):
			stack = append(stack, nil) // an array: no names
			continue
		case json.Delim(']'):
			stack = stack[:len(stack)-1]
		}
		if len(stack) > 0 && stack[len(stack)-1] != nil {
			stack[len(stack)-1].wantKey = true
		}
	}
}
