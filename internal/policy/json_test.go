package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func parseJSON(t testing.TB, s string) (*jsonDoc, error) {
	t.Helper()
	d := &jsonDoc{}
	return d, d.parseText([]byte(s))
}

func TestParseJSONAccepts(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// want is the value as encoding/json sees it (numbers as json.Number).
		want any
	}{
		{"empty object", `{}`, map[string]any{}},
		{"whitespace", " \t\r\n{ \"a\" : 1 }\n", map[string]any{"a": json.Number("1")}},
		{"nested", `{"a":{"b":[1,"x",true,false,null,{}]}}`, map[string]any{"a": map[string]any{"b": []any{json.Number("1"), "x", true, false, nil, map[string]any{}}}}},
		{"escapes", `{"s":"a\"b\\c\/d\b\f\n\r\t\u00e9\ud83d\ude00"}`, map[string]any{"s": "a\"b\\c/d\b\f\n\r\té😀"}},
		{"big int kept exact", `{"n":9007199254740993}`, map[string]any{"n": json.Number("9007199254740993")}},
		{"number forms", `[0,-0,1.5,-2e10,3E+2,4e-1]`, []any{json.Number("0"), json.Number("-0"), json.Number("1.5"), json.Number("-2e10"), json.Number("3E+2"), json.Number("4e-1")}},
		{"utf8", `{"ключ":"значение"}`, map[string]any{"ключ": "значение"}},
		{"scalar top", `"x"`, "x"},
		{"similar keys", `{"a":1,"ab":2,"b":3}`, map[string]any{"a": json.Number("1"), "ab": json.Number("2"), "b": json.Number("3")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := parseJSON(t, tt.in)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, docToGeneric(d, 0)); diff != "" {
				t.Errorf("value (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseJSONRefuses(t *testing.T) {
	deep := strings.Repeat("[", maxJSONDepth+1) + strings.Repeat("]", maxJSONDepth+1)
	okDeep := strings.Repeat("[", maxJSONDepth) + strings.Repeat("]", maxJSONDepth)
	if _, err := parseJSON(t, okDeep); err != nil {
		t.Fatalf("depth %d refused: %v", maxJSONDepth, err)
	}
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"empty", ``, errJSONSyntax},
		{"duplicate key", `{"a":1,"a":2}`, errJSONDuplicate},
		{"duplicate key escaped", `{"a":1,"\u0061":2}`, errJSONDuplicate},
		{"duplicate nested", `{"x":[{"k":1,"k":1}]}`, errJSONDuplicate},
		{"duplicate in big object", bigObject(40, true), errJSONDuplicate},
		{"trailing comma", `{"a":1,}`, errJSONSyntax},
		{"trailing data", `{} {}`, errJSONSyntax},
		{"single quotes", `{'a':1}`, errJSONSyntax},
		{"unquoted key", `{a:1}`, errJSONSyntax},
		{"leading zero", `[01]`, errJSONSyntax},
		{"plus", `[+1]`, errJSONSyntax},
		{"bare dot", `[1.]`, errJSONSyntax},
		{"bare exp", `[1e]`, errJSONSyntax},
		{"NaN", `[NaN]`, errJSONSyntax},
		{"control char", "[\"a\x01\"]", errJSONSyntax},
		{"bad escape", `["\x"]`, errJSONSyntax},
		{"short unicode", `["\u12"]`, errJSONSyntax},
		{"lone high surrogate", `["\ud800"]`, errJSONUTF8},
		{"lone low surrogate", `["\udc00"]`, errJSONUTF8},
		{"high then non-low", `["\ud800\u0041"]`, errJSONUTF8},
		{"invalid utf8", "[\"\xff\"]", errJSONUTF8},
		{"invalid utf8 escaped path", "[\"\\n\xff\"]", errJSONUTF8},
		{"too deep", deep, errJSONDepth},
		{"unterminated", `{"a":"b`, errJSONSyntax},
		{"bad literal", `[tru]`, errJSONSyntax},
		{"BOM", "\ufeff{}", errJSONSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseJSON(t, tt.in)
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}

func bigObject(n int, dup bool) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"k`)
		b.WriteString(strings.Repeat("x", i))
		b.WriteString(`":1`)
	}
	if dup {
		b.WriteString(`,"k":2`)
	}
	b.WriteByte('}')
	return b.String()
}

func TestParseObjectRequiresObject(t *testing.T) {
	d := &jsonDoc{}
	d.buf = append(d.buf[:0], `[1]`...)
	if err := d.parseObject(3); !errors.Is(err, errJSONNotObject) {
		t.Errorf("error = %v, want errJSONNotObject", err)
	}
}

// docToGeneric converts a parsed document to the shapes encoding/json
// produces with UseNumber, so the two parsers can be compared.
func docToGeneric(d *jsonDoc, n int32) any {
	nd := d.nodes[n]
	switch nd.kind {
	case jsonObject:
		m := map[string]any{}
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			m[string(d.key(c))] = docToGeneric(d, c)
		}
		return m
	case jsonArray:
		s := []any{}
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			s = append(s, docToGeneric(d, c))
		}
		return s
	case jsonString:
		return string(d.strVal(n))
	case jsonNumber:
		return json.Number(d.raw(n))
	case jsonTrue:
		return true
	case jsonFalse:
		return false
	}
	return nil
}

func TestCompactSortedAndEscaped(t *testing.T) {
	d, err := parseJSON(t, `{"b":[1, {"y":2,"x":"a\nb"}], "a" : "q\"" }`)
	if err != nil {
		t.Fatal(err)
	}
	got := string(d.appendCompact(nil, 0))
	want := `{"a":"q\"","b":[1,{"x":"a\u000ab","y":2}]}`
	if got != want {
		t.Errorf("compact = %s, want %s", got, want)
	}
	var v any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Errorf("compact output is not JSON: %v", err)
	}
}

func FuzzParseJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":[1,2,{"b":null}]}`, `{"a":1,"a":2}`, `"\ud83d\ude00"`, `[1e5,-0.5]`, `{"a":"\u0061"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		d := &jsonDoc{}
		if err := d.parseText(in); err != nil {
			return
		}
		// Whatever we accept, encoding/json accepts, with the same value.
		if !json.Valid(in) {
			t.Fatalf("accepted invalid JSON %q", in)
		}
		dec := json.NewDecoder(bytes.NewReader(in))
		dec.UseNumber()
		var want any
		if err := dec.Decode(&want); err != nil {
			t.Fatalf("encoding/json: %v", err)
		}
		if diff := cmp.Diff(want, docToGeneric(d, 0)); diff != "" {
			t.Fatalf("value differs for %q (-encoding/json +ours):\n%s", in, diff)
		}
		// The compact form parses back to the same value.
		c := d.appendCompact(nil, 0)
		d2 := &jsonDoc{}
		if err := d2.parseText(c); err != nil {
			t.Fatalf("compact form %q does not parse: %v", c, err)
		}
		if diff := cmp.Diff(docToGeneric(d, 0), docToGeneric(d2, 0)); diff != "" {
			t.Fatalf("compact round trip differs:\n%s", diff)
		}
	})
}
