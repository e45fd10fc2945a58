package policy

import (
	"errors"
	"unicode/utf8"
)

// This file holds the strict JSON parser used for JWS headers and payloads.
//
// encoding/json is not used on the request path because it accepts duplicate
// keys (the last one wins, while other parsers keep the first: a classic
// claim-smuggling vector), it turns numbers into float64 (2^53+1 would no
// longer compare exactly), and decoding into maps allocates per value. This
// parser is RFC 8259 strict, refuses duplicate keys at any depth (compared
// after unescaping, so "a" and "\u0061" collide), refuses invalid UTF-8 and
// lone surrogates, and bounds nesting. It builds a flat tree of nodes whose
// spans point into one reusable buffer, so a pooled document parses without
// allocating.

// maxJSONDepth bounds nesting. The token size cap bounds everything else
// (node count, string lengths), so this is the only extra limit needed to keep
// the recursive parser's stack small.
const maxJSONDepth = 64

// jsonKind is the type of a JSON value.
type jsonKind uint8

const (
	jsonInvalid jsonKind = iota
	jsonObject
	jsonArray
	jsonString
	jsonNumber
	jsonTrue
	jsonFalse
	jsonNull
)

// String names the kind as in error descriptions.
func (k jsonKind) String() string {
	switch k {
	case jsonObject:
		return "object"
	case jsonArray:
		return "array"
	case jsonString:
		return "string"
	case jsonNumber:
		return "number"
	case jsonTrue, jsonFalse:
		return "boolean"
	case jsonNull:
		return "null"
	default:
		return "invalid"
	}
}

// jsonNode is one value. Spans are offsets into jsonDoc.buf (not slices) so
// that growing the buffer's string arena never invalidates them.
type jsonNode struct {
	kind jsonKind
	// start, end: the raw JSON text of the value.
	start, end int32
	// sOff, sLen: a string's unescaped content (inside the raw text when it
	// has no escapes, else in the arena after the JSON text).
	sOff, sLen int32
	// kOff, kLen: the unescaped key when the node is an object member.
	kOff, kLen int32
	// first child, next sibling (-1: none) and child count.
	first, next, count int32
}

// jsonDoc is a parsed JSON text. buf[:textLen] is the text; unescaped strings
// are appended after it.
type jsonDoc struct {
	buf     []byte
	textLen int
	nodes   []jsonNode
}

// Parse errors are static so a failed parse does not allocate; explain turns
// them into text.
var (
	errJSONSyntax    = errors.New("invalid JSON")
	errJSONDepth     = errors.New("JSON nested too deeply")
	errJSONDuplicate = errors.New("duplicate JSON object key")
	errJSONUTF8      = errors.New("invalid UTF-8 or lone surrogate in JSON string")
	errJSONNotObject = errors.New("JSON value is not an object")
)

// reset prepares d for a text of n bytes that the caller writes into d.buf[:n].
func (d *jsonDoc) reset() {
	d.buf = d.buf[:0]
	d.nodes = d.nodes[:0]
	d.textLen = 0
}

// parseText copies text into the document and parses it (used by tests,
// fuzzing and compile-time callers; the request path decodes base64 straight
// into buf and calls parse).
func (d *jsonDoc) parseText(text []byte) error {
	d.reset()
	d.buf = append(d.buf, text...)
	return d.parse(len(text))
}

// parse parses d.buf[:n] as one JSON value; the root is node 0.
func (d *jsonDoc) parse(n int) error {
	d.buf = d.buf[:n]
	d.textLen = n
	d.nodes = d.nodes[:0]
	p := jsonParser{d: d, s: d.buf[:n:n]}
	p.skipWS()
	if _, err := p.value(0); err != nil {
		return err
	}
	p.skipWS()
	if p.i != len(p.s) {
		return errJSONSyntax
	}
	return nil
}

// parseObject parses d.buf[:n] and requires an object at the top.
func (d *jsonDoc) parseObject(n int) error {
	if err := d.parse(n); err != nil {
		return err
	}
	if d.nodes[0].kind != jsonObject {
		return errJSONNotObject
	}
	return nil
}

type jsonParser struct {
	d *jsonDoc
	s []byte // the text; the arena lives in d.buf beyond len(s)
	i int
}

func (p *jsonParser) skipWS() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) newNode(k jsonKind) int32 {
	p.d.nodes = append(p.d.nodes, jsonNode{kind: k, start: int32(p.i), first: -1, next: -1})
	return int32(len(p.d.nodes) - 1)
}

// value parses the value at p.i (whitespace already skipped).
func (p *jsonParser) value(depth int) (int32, error) {
	if p.i >= len(p.s) {
		return -1, errJSONSyntax
	}
	switch c := p.s[p.i]; c {
	case '{':
		return p.object(depth + 1)
	case '[':
		return p.array(depth + 1)
	case '"':
		idx := p.newNode(jsonString)
		off, n, err := p.str()
		if err != nil {
			return -1, err
		}
		nd := &p.d.nodes[idx]
		nd.sOff, nd.sLen, nd.end = off, n, int32(p.i)
		return idx, nil
	case 't':
		return p.literal("true", jsonTrue)
	case 'f':
		return p.literal("false", jsonFalse)
	case 'n':
		return p.literal("null", jsonNull)
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return p.number()
		}
		return -1, errJSONSyntax
	}
}

func (p *jsonParser) literal(lit string, k jsonKind) (int32, error) {
	if len(p.s)-p.i < len(lit) || string(p.s[p.i:p.i+len(lit)]) != lit {
		return -1, errJSONSyntax
	}
	idx := p.newNode(k)
	p.i += len(lit)
	p.d.nodes[idx].end = int32(p.i)
	return idx, nil
}

// number checks the RFC 8259 grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
// The text is kept as written; callers convert only what they need.
func (p *jsonParser) number() (int32, error) {
	idx := p.newNode(jsonNumber)
	s, i := p.s, p.i
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return -1, errJSONSyntax
	}
	if i < len(s) && s[i] == '.' {
		i++
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return -1, errJSONSyntax
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		d := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == d {
			return -1, errJSONSyntax
		}
	}
	p.i = i
	p.d.nodes[idx].end = int32(i)
	return idx, nil
}

// str parses a string at p.i (on the opening quote) and returns the span of
// its unescaped content in d.buf.
func (p *jsonParser) str() (off, n int32, err error) {
	s := p.s
	i := p.i + 1
	begin := i
	ascii := true
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(s[begin:i]) {
				return 0, 0, errJSONUTF8
			}
			p.i = i + 1
			return int32(begin), int32(i - begin), nil
		case c == '\\':
			return p.strEscaped(begin, i)
		case c < 0x20:
			return 0, 0, errJSONSyntax
		case c >= 0x80:
			ascii = false
		}
		i++
	}
	return 0, 0, errJSONSyntax
}

// strEscaped finishes a string with escapes: the prefix s[begin:i] has none;
// the unescaped content goes to the arena at the end of d.buf.
func (p *jsonParser) strEscaped(begin, i int) (off, n int32, err error) {
	s := p.s
	d := p.d
	arenaStart := len(d.buf)
	d.buf = append(d.buf, s[begin:i]...)
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			p.i = i + 1
			content := d.buf[arenaStart:]
			if !utf8.Valid(content) {
				return 0, 0, errJSONUTF8
			}
			return int32(arenaStart), int32(len(content)), nil
		case c < 0x20:
			return 0, 0, errJSONSyntax
		case c != '\\':
			d.buf = append(d.buf, c)
			i++
			continue
		}
		// An escape sequence.
		if i+1 >= len(s) {
			return 0, 0, errJSONSyntax
		}
		e := s[i+1]
		i += 2
		switch e {
		case '"', '\\', '/':
			d.buf = append(d.buf, e)
		case 'b':
			d.buf = append(d.buf, '\b')
		case 'f':
			d.buf = append(d.buf, '\f')
		case 'n':
			d.buf = append(d.buf, '\n')
		case 'r':
			d.buf = append(d.buf, '\r')
		case 't':
			d.buf = append(d.buf, '\t')
		case 'u':
			r, ok := hex4(s, i)
			if !ok {
				return 0, 0, errJSONSyntax
			}
			i += 4
			switch {
			case r >= 0xDC00 && r <= 0xDFFF:
				return 0, 0, errJSONUTF8 // a low surrogate alone
			case r >= 0xD800 && r <= 0xDBFF:
				// A high surrogate must be followed by an escaped low one.
				if i+6 > len(s) || s[i] != '\\' || s[i+1] != 'u' {
					return 0, 0, errJSONUTF8
				}
				lo, ok := hex4(s, i+2)
				if !ok || lo < 0xDC00 || lo > 0xDFFF {
					return 0, 0, errJSONUTF8
				}
				i += 6
				r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
			}
			d.buf = utf8.AppendRune(d.buf, r)
		default:
			return 0, 0, errJSONSyntax
		}
	}
	return 0, 0, errJSONSyntax
}

func hex4(s []byte, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (p *jsonParser) array(depth int) (int32, error) {
	if depth > maxJSONDepth {
		return -1, errJSONDepth
	}
	idx := p.newNode(jsonArray)
	p.i++ // [
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == ']' {
		p.i++
		p.d.nodes[idx].end = int32(p.i)
		return idx, nil
	}
	prev := int32(-1)
	var count int32
	for {
		p.skipWS()
		child, err := p.value(depth)
		if err != nil {
			return -1, err
		}
		if prev < 0 {
			p.d.nodes[idx].first = child
		} else {
			p.d.nodes[prev].next = child
		}
		prev = child
		count++
		p.skipWS()
		if p.i >= len(p.s) {
			return -1, errJSONSyntax
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			nd := &p.d.nodes[idx]
			nd.end, nd.count = int32(p.i), count
			return idx, nil
		default:
			return -1, errJSONSyntax
		}
	}
}

func (p *jsonParser) object(depth int) (int32, error) {
	if depth > maxJSONDepth {
		return -1, errJSONDepth
	}
	idx := p.newNode(jsonObject)
	p.i++ // {
	p.skipWS()
	if p.i < len(p.s) && p.s[p.i] == '}' {
		p.i++
		p.d.nodes[idx].end = int32(p.i)
		return idx, nil
	}
	prev := int32(-1)
	var count int32
	for {
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != '"' {
			return -1, errJSONSyntax
		}
		kOff, kLen, err := p.str()
		if err != nil {
			return -1, err
		}
		p.skipWS()
		if p.i >= len(p.s) || p.s[p.i] != ':' {
			return -1, errJSONSyntax
		}
		p.i++
		p.skipWS()
		child, err := p.value(depth)
		if err != nil {
			return -1, err
		}
		nd := &p.d.nodes[child]
		nd.kOff, nd.kLen = kOff, kLen
		if prev < 0 {
			p.d.nodes[idx].first = child
		} else {
			p.d.nodes[prev].next = child
		}
		prev = child
		count++
		p.skipWS()
		if p.i >= len(p.s) {
			return -1, errJSONSyntax
		}
		switch p.s[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			nd := &p.d.nodes[idx]
			nd.end, nd.count = int32(p.i), count
			if p.d.hasDuplicateKeys(idx) {
				return -1, errJSONDuplicate
			}
			return idx, nil
		default:
			return -1, errJSONSyntax
		}
	}
}

// hasDuplicateKeys compares the unescaped member keys of an object. Small
// objects (the usual case) are compared pairwise without allocating; large
// ones use a set so that a hostile token cannot make the check quadratic.
func (d *jsonDoc) hasDuplicateKeys(obj int32) bool {
	o := &d.nodes[obj]
	if o.count < 2 {
		return false
	}
	if o.count > 32 {
		seen := make(map[string]struct{}, o.count)
		for c := o.first; c >= 0; c = d.nodes[c].next {
			k := string(d.key(c))
			if _, dup := seen[k]; dup {
				return true
			}
			seen[k] = struct{}{}
		}
		return false
	}
	for a := o.first; a >= 0; a = d.nodes[a].next {
		ka := d.key(a)
		for b := d.nodes[a].next; b >= 0; b = d.nodes[b].next {
			if string(ka) == string(d.key(b)) {
				return true
			}
		}
	}
	return false
}

// key returns the unescaped key of an object member.
func (d *jsonDoc) key(i int32) []byte {
	n := &d.nodes[i]
	return d.buf[n.kOff : n.kOff+n.kLen]
}

// raw returns the JSON text of a value as written.
func (d *jsonDoc) raw(i int32) []byte {
	n := &d.nodes[i]
	return d.buf[n.start:n.end]
}

// strVal returns the unescaped content of a string value.
func (d *jsonDoc) strVal(i int32) []byte {
	n := &d.nodes[i]
	return d.buf[n.sOff : n.sOff+n.sLen]
}

// member returns the member of object obj with the given key, or -1.
func (d *jsonDoc) member(obj int32, key string) int32 {
	for c := d.nodes[obj].first; c >= 0; c = d.nodes[c].next {
		if string(d.key(c)) == key {
			return c
		}
	}
	return -1
}

// text returns the value's text as compared by the claim operators: a
// string's unescaped content, any other value's JSON text as written.
func (d *jsonDoc) text(i int32) []byte {
	if d.nodes[i].kind == jsonString {
		return d.strVal(i)
	}
	return d.raw(i)
}
