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
	if !json.Valid(data) {
		return syntaxError(data)
	}
	var root reflect.Type
	if v != nil {
		root = reflect.TypeOf(v)
	}
	w := walker{data: data, fields: map[reflect.Type]map[string][]field{}}
	return w.value(root, "", "", -1)
}

// syntaxError says why json.Valid refused data, telling a second value
// from a syntax error.
func syntaxError(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var first json.RawMessage
	if err := dec.Decode(&first); err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF
		}
		return err
	}
	if _, err := dec.Token(); err != nil && err != io.EOF {
		return err
	}
	return ErrTrailingData
}

// field is one JSON name a struct knows, and the type of its value.
type field struct {
	name  string
	typ   reflect.Type
	depth int // of embedding, for the shallower-wins rule of encoding/json
}

// walker reads JSON that json.Valid accepted, so it never meets a syntax
// error and checks nothing but member names.
type walker struct {
	data   []byte
	i      int
	fields map[reflect.Type]map[string][]field // memo of struct fields, for this call
}

func (w *walker) space() {
	for w.i < len(w.data) {
		switch w.data[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

// value reads the value at w.i, expected to decode into t (nil: no
// schema). It is member key of the object at path, or element index of
// the array at path when index >= 0; the path is built only when needed.
func (w *walker) value(t reflect.Type, path, key string, index int) error {
	w.space()
	switch w.data[w.i] {
	case '{':
		return w.object(schema(t), childPath(path, key, index))
	case '[':
		return w.array(elem(deref(t)), childPath(path, key, index))
	case '"':
		w.str()
	default: // a number, true, false or null
		for w.i < len(w.data) && !strings.ContainsRune(",]} \t\r\n", rune(w.data[w.i])) {
			w.i++
		}
	}
	return nil
}

func childPath(path, key string, index int) string {
	switch {
	case index >= 0:
		return path + "[" + strconv.Itoa(index) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// str skips the string at w.i and returns it, quotes included.
func (w *walker) str() []byte {
	start := w.i
	w.i++
	for w.data[w.i] != '"' {
		if w.data[w.i] == '\\' {
			w.i++
		}
		w.i++
	}
	w.i++
	return w.data[start:w.i]
}

func (w *walker) array(t reflect.Type, path string) error {
	w.i++ // [
	for n := 0; ; n++ {
		w.space()
		if w.data[w.i] == ']' {
			w.i++
			return nil
		}
		if w.data[w.i] == ',' {
			w.i++
		}
		if err := w.value(t, path, "", n); err != nil {
			return err
		}
	}
}

// object reads an object to be decoded into t (a struct or a map; nil: no
// schema), checking every member name.
func (w *walker) object(t reflect.Type, path string) error {
	w.i++ // past the brace
	// The names so far: compared one by one while few, as most objects
	// are small, then by fold key.
	var few []string
	var many map[string]string // fold key → first name seen
	for {
		w.space()
		switch w.data[w.i] {
		case '}':
			w.i++
			return nil
		case ',':
			w.i++
			w.space()
		}
		name := unquote(w.str())
		w.space()
		w.i++ // past the colon
		if many == nil {
			for _, prev := range few {
				if strings.EqualFold(prev, name) {
					return &MemberError{Path: path, Name: name, Other: prev, Dup: true}
				}
			}
			few = append(few, name)
			if len(few) > 16 {
				many = make(map[string]string, 2*len(few))
				for _, n := range few {
					many[foldKey(n)] = n
				}
			}
		} else {
			k := foldKey(name)
			if prev, ok := many[k]; ok {
				return &MemberError{Path: path, Name: name, Other: prev, Dup: true}
			}
			many[k] = name
		}
		child, err := w.member(t, name, path)
		if err != nil {
			return err
		}
		if err := w.value(child, path, name, -1); err != nil {
			return err
		}
	}
}

// member checks name against what t knows and returns the type of its value.
func (w *walker) member(t reflect.Type, name, path string) (reflect.Type, error) {
	if t == nil {
		return nil, nil
	}
	switch t.Kind() {
	case reflect.Struct:
		fds := w.structFields(t)[foldKey(name)]
		for _, fd := range fds {
			if fd.name == name {
				return fd.typ, nil
			}
		}
		if len(fds) > 0 {
			return nil, &MemberError{Path: path, Name: name, Other: fds[0].name}
		}
	case reflect.Map:
		return t.Elem(), nil
	}
	return nil, nil
}

// unquote decodes a JSON string as encoding/json does, by encoding/json
// itself when it holds escapes or non-ASCII bytes (invalid UTF-8 becomes
// U+FFFD there, and must here too).
func unquote(q []byte) string {
	plain := true
	for _, b := range q {
		if b == '\\' || b >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return string(q[1 : len(q)-1])
	}
	var s string
	_ = json.Unmarshal(q, &s) // valid: json.Valid accepted the whole
	return s
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
func (w *walker) structFields(t reflect.Type) map[string][]field {
	if m, ok := w.fields[t]; ok {
		return m
	}
	m := map[string][]field{}
	w.fields[t] = m
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
