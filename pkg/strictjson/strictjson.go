// Package strictjson decodes signed JSON so that every reader reads it the
// same way.
//
// encoding/json matches member names case-insensitively and lets the last
// of two equal names win; other parsers (go-jose's, the portal's, a
// browser's) match exactly, take the first, or refuse. A signed
// {"revision":1,"Revision":9} therefore means different things to different
// readers, and a signature vouches for bytes, not for a reading. Check
// refuses such input before any decoding, at every depth:
//
//   - two member names of one object that are equal under strings.EqualFold
//     (a duplicate, or two spellings that encoding/json would both map to
//     the same field);
//   - a member name that is not exactly one of the target struct's JSON
//     names but equals one of them under strings.EqualFold ("Revision" for
//     "revision");
//   - anything after the first JSON value.
package strictjson

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MemberError is a member name refused by Check.
type MemberError struct {
	Path  string // where the object is, as "pbx" or "ssh.public_keys[0]"; "" at the top
	Name  string // the refused name, as decoded
	Other string // the name it collides with: the earlier member, or the known field
	Dup   bool   // Other is an earlier member of the same object, not a field name
}

func (e *MemberError) Error() string {
	var msg string
	switch {
	case e.Dup && e.Name == e.Other:
		msg = fmt.Sprintf("duplicate member %q", e.Name)
	case e.Dup:
		msg = fmt.Sprintf("member %q differs only in case from member %q", e.Name, e.Other)
	default:
		msg = fmt.Sprintf("member %q differs only in case from %q", e.Name, e.Other)
	}
	if e.Path != "" {
		msg += " in " + strconv.Quote(e.Path)
	}
	return msg
}

// ErrTrailingData is input that goes on after its JSON value.
var ErrTrailingData = errors.New("more than one JSON value")

// Unmarshal checks data with Check against v, then decodes it into v with
// encoding/json, unknown members allowed (ignored).
func Unmarshal(data []byte, v any) error {
	if err := Check(data, v); err != nil {
		return err
	}
	return json.Unmarshal(data, v)
}

// UnmarshalKnown is Unmarshal that refuses members v does not know, as
// json.Decoder.DisallowUnknownFields does.
func UnmarshalKnown(data []byte, v any) error {
	if err := Check(data, v); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v) // Check has made sure nothing follows the value
}

// Check scans data, which must hold exactly one JSON value, and refuses
// the member names described in the package comment. v is the value data
// will be decoded into (usually a pointer to a struct); its JSON field
// names are the known names. With a nil v only the rules that need no
// target apply. Check decodes nothing into v.
func Check(data []byte, v any) error {
	var root reflect.Type
	if v != nil {
		root = reflect.TypeOf(v)
	}
	c := checker{fields: map[reflect.Type]map[string][]field{}}
	return c.scan(data, root)
}

// field is one JSON name a struct knows, and the type of its value.
type field struct {
	name  string
	typ   reflect.Type
	depth int // of embedding, for the shallower-wins rule of encoding/json
}

// frame is an open object or array.
type frame struct {
	object   bool
	typ      reflect.Type      // the object's or array's type; nil: no schema
	names    map[string]string // fold key → first name seen (objects)
	wantKey  bool              // the next token is a member name (objects)
	key      string            // the current member (objects)
	index    int               // the current element (arrays)
	elemType reflect.Type      // type of the value being read
	path     string
}

type checker struct {
	fields map[reflect.Type]map[string][]field // memo of struct fields, for this call
}

func (c *checker) scan(data []byte, root reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // numbers are not converted: no range error of its own
	var stack []*frame
	done := false // the top-level value is complete
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return io.ErrUnexpectedEOF
			}
			return nil
		}
		if err != nil {
			return err
		}
		if done {
			return ErrTrailingData
		}
		var top *frame
		if n := len(stack); n > 0 {
			top = stack[n-1]
		}
		if top != nil && top.object && top.wantKey {
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:len(stack)-1]
				done = valueDone(stack)
				continue
			}
			name, _ := tok.(string) // Token returns only strings here
			if err := c.member(top, name); err != nil {
				return err
			}
			continue
		}
		// A value: the top level, a member's or an element's.
		var t reflect.Type
		path := ""
		switch {
		case top == nil:
			t = root
		case top.object:
			t, path = top.elemType, join(top.path, top.key)
		default:
			t, path = elem(top.typ), fmt.Sprintf("%s[%d]", top.path, top.index)
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, &frame{object: true, typ: schema(t), wantKey: true, path: path})
				continue
			case '[':
				stack = append(stack, &frame{typ: deref(t), path: path})
				continue
			case ']':
				stack = stack[:len(stack)-1]
				done = valueDone(stack)
				continue
			}
		}
		done = valueDone(stack)
	}
}

// valueDone records that a value of the innermost open frame ended, and
// reports whether that was the top-level value.
func valueDone(stack []*frame) bool {
	if len(stack) == 0 {
		return true
	}
	top := stack[len(stack)-1]
	if top.object {
		top.wantKey = true
	} else {
		top.index++
	}
	return false
}

// member checks one member name of object f and sets the type of its value.
func (c *checker) member(f *frame, name string) error {
	k := foldKey(name)
	if f.names == nil {
		f.names = map[string]string{}
	}
	if prev, ok := f.names[k]; ok {
		return &MemberError{Path: f.path, Name: name, Other: prev, Dup: true}
	}
	f.names[k] = name
	f.wantKey, f.key, f.elemType = false, name, nil
	if f.typ == nil {
		return nil
	}
	switch f.typ.Kind() {
	case reflect.Struct:
		fds := c.structFields(f.typ)[k]
		for _, fd := range fds {
			if fd.name == name {
				f.elemType = fd.typ
				return nil
			}
		}
		if len(fds) > 0 {
			return &MemberError{Path: f.path, Name: name, Other: fds[0].name}
		}
	case reflect.Map:
		f.elemType = f.typ.Elem()
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// schema returns the type whose member names an object is checked
// against: a struct or a map, pointers removed; nil when the type decodes
// itself or takes anything.
func schema(t reflect.Type) reflect.Type {
	t = deref(t)
	if t == nil {
		return nil
	}
	if t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	if k := t.Kind(); k == reflect.Struct || k == reflect.Map {
		return t
	}
	return nil
}

func deref(t reflect.Type) reflect.Type {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// elem is the element type of an array or slice type, or nil.
func elem(t reflect.Type) reflect.Type {
	if t == nil || t.Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	if k := t.Kind(); k == reflect.Slice || k == reflect.Array {
		return t.Elem()
	}
	return nil
}

// structFields returns the JSON names of struct type t by fold key, with
// fields of embedded structs promoted as encoding/json promotes them. A
// struct may know two names that differ only in case: both are listed.
func (c *checker) structFields(t reflect.Type) map[string][]field {
	if m, ok := c.fields[t]; ok {
		return m
	}
	m := map[string][]field{}
	c.fields[t] = m
	addFields(m, t, 0, map[reflect.Type]bool{})
	return m
}

func addFields(m map[string][]field, t reflect.Type, depth int, visiting map[reflect.Type]bool) {
	if visiting[t] {
		return
	}
	visiting[t] = true
	defer delete(visiting, t)
	for i := range t.NumField() {
		sf := t.Field(i)
		ft := sf.Type
		if sf.Anonymous {
			if !sf.IsExported() && deref(ft).Kind() != reflect.Struct {
				continue
			}
		} else if !sf.IsExported() {
			continue
		}
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if name == "" && sf.Anonymous && deref(ft).Kind() == reflect.Struct {
			addFields(m, deref(ft), depth+1, visiting)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		k := foldKey(name)
		fds := m[k]
		if i := slices.IndexFunc(fds, func(f field) bool { return f.name == name }); i >= 0 {
			if fds[i].depth > depth { // the shallower field wins
				fds[i] = field{name: name, typ: ft, depth: depth}
			}
			continue
		}
		m[k] = append(fds, field{name: name, typ: ft, depth: depth})
	}
}

// foldKey maps s to a string that is equal for two strings exactly when
// strings.EqualFold holds between them: each rune becomes the smallest
// rune of its simple case-folding orbit, as EqualFold compares.
func foldKey(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return strings.ToLower(s)
	}
	var b strings.Builder
	for _, r := range s {
		least := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			least = min(least, f)
		}
		if least < utf8.RuneSelf && 'A' <= least && least <= 'Z' {
			least += 'a' - 'A' // agree with the ASCII path
		}
		b.WriteRune(least)
	}
	return b.String()
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}
