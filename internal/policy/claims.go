package policy

import (
	"bytes"
	"strconv"
	"time"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// check applies one required claim to the payload. Values compare with the
// claim's JSON text (a string unescaped, anything else as written), so
// numbers keep their exact spelling and 2^53+1 stays exact.
func (c *requiredClaim) check(d *jsonDoc, i int, tr *Trace) (denial, bool) {
	n, res := d.lookup(c.path)
	null := res == claimFound && d.nodes[n].kind == jsonNull
	name := "" // step name, built only when tracing
	if tr != nil {
		name = "claim[" + strconv.Itoa(i) + "]"
	}
	if c.op == authv1alpha1.OpDoesNotExist {
		switch {
		case res != claimFound:
			if tr != nil {
				tr.add(name, true, "%s DoesNotExist: absent", c.pathText)
			}
			return denial{}, true
		case null:
			if tr != nil {
				tr.add(name, false, "%s DoesNotExist: present as null", c.pathText)
			}
		default:
			if tr != nil {
				tr.add(name, false, "%s DoesNotExist: present, %s", c.pathText, shownValue(d, n))
			}
		}
		return c.mismatch, false
	}
	switch {
	case res == claimBlocked:
		if tr != nil {
			tr.add(name, false, "%s %s: the path runs through a non-object", c.pathText, c.op)
		}
		return c.missing, false
	case res == claimAbsent:
		if tr != nil {
			tr.add(name, false, "%s %s: absent", c.pathText, c.op)
		}
		return c.missing, false
	case null:
		if tr != nil {
			tr.add(name, false, "%s %s: null", c.pathText, c.op)
		}
		return c.missing, false
	}
	ok := c.holds(d, n)
	if tr != nil {
		tr.add(name, ok, "%s %s%s: found %s %s", c.pathText, c.op, valuesSuffix(c.values), d.nodes[n].kind, shownValue(d, n))
	}
	if !ok {
		return c.mismatch, false
	}
	return denial{}, true
}

// holds applies the operator to a present, non-null claim.
func (c *requiredClaim) holds(d *jsonDoc, n int32) bool {
	kind := d.nodes[n].kind
	switch c.op {
	case authv1alpha1.OpExists:
		return true
	case authv1alpha1.OpIn, authv1alpha1.OpNotIn:
		if kind == jsonObject || kind == jsonArray {
			return false
		}
		in := false
		t := d.text(n)
		for _, v := range c.values {
			if string(t) == v {
				in = true
				break
			}
		}
		return in == (c.op == authv1alpha1.OpIn)
	case authv1alpha1.OpMatches:
		if kind == jsonObject || kind == jsonArray {
			return false
		}
		t := d.text(n)
		for _, re := range c.patterns {
			if re.Match(t) {
				return true
			}
		}
		return false
	case authv1alpha1.OpContainsAny, authv1alpha1.OpContainsAll:
		if kind == jsonArray {
			for e := d.nodes[n].first; e >= 0; e = d.nodes[e].next {
				if d.nodes[e].kind != jsonString {
					return false
				}
			}
		} else if kind != jsonString {
			return false
		}
		all := c.op == authv1alpha1.OpContainsAll
		for _, v := range c.values {
			has := d.holdsItem(n, v)
			if has && !all {
				return true
			}
			if !has && all {
				return false
			}
		}
		return all
	}
	return false
}

// holdsItem reports whether an array of strings has the element v, or a
// space-separated string (OAuth scope) has the word v.
func (d *jsonDoc) holdsItem(n int32, v string) bool {
	if d.nodes[n].kind == jsonArray {
		for e := d.nodes[n].first; e >= 0; e = d.nodes[e].next {
			if string(d.strVal(e)) == v {
				return true
			}
		}
		return false
	}
	s := d.strVal(n)
	for len(s) > 0 {
		i := bytes.IndexByte(s, ' ')
		word := s
		if i >= 0 {
			word, s = s[:i], s[i+1:]
		} else {
			s = nil
		}
		if len(word) > 0 && string(word) == v {
			return true
		}
	}
	return false
}

// jsonNumberValue converts a number node to float64 for the time claims; ok
// is false for a non-number or one out of float64 range.
func jsonNumberValue(d *jsonDoc, n int32) (float64, bool) {
	if d.nodes[n].kind != jsonNumber {
		return 0, false
	}
	raw := d.raw(n)
	// Fast path: a plain integer of up to 15 digits is exact in float64.
	if len(raw) <= 15 {
		var v int64
		neg := false
		plain := true
		for i, c := range raw {
			switch {
			case c >= '0' && c <= '9':
				v = v*10 + int64(c-'0')
			case c == '-' && i == 0:
				neg = true
			default:
				plain = false
			}
		}
		if plain {
			if neg {
				v = -v
			}
			return float64(v), true
		}
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		// Only a range error is possible after the grammar check: a time
		// claim of 1e400 means nothing, so it is malformed.
		return 0, false
	}
	return f, true
}

// toAny converts a value for CEL: objects to map[string]any, arrays to []any,
// numbers to int64 when integral and in range, else float64.
func (d *jsonDoc) toAny(n int32) any {
	nd := &d.nodes[n]
	switch nd.kind {
	case jsonObject:
		m := make(map[string]any, nd.count)
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			m[string(d.key(c))] = d.toAny(c)
		}
		return m
	case jsonArray:
		s := make([]any, 0, nd.count)
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			s = append(s, d.toAny(c))
		}
		return s
	case jsonString:
		return string(d.strVal(n))
	case jsonNumber:
		raw := string(d.raw(n))
		if bytes.IndexAny(d.raw(n), ".eE") < 0 {
			if v, err := strconv.ParseInt(raw, 10, 64); err == nil {
				return v
			}
		}
		f, _ := strconv.ParseFloat(raw, 64)
		return f
	case jsonTrue:
		return true
	case jsonFalse:
		return false
	}
	return nil
}

// forwardHeadersFor builds the forwarded claim headers of an allowed token.
func (p *Policy) forwardHeadersFor(d *jsonDoc, tr *Trace) []Header {
	if len(p.forwards) == 0 {
		return nil
	}
	var out []Header
	for i := range p.forwards {
		f := &p.forwards[i]
		n, res := d.lookup(f.path)
		if res != claimFound || d.nodes[n].kind == jsonNull {
			if tr != nil {
				tr.add("forward", true, "%s: claim %s absent, header not set", f.header, f.pathText)
			}
			continue
		}
		v := d.forwardValue(n)
		if !safeHeaderValue(v) {
			if tr != nil {
				tr.add("forward", false, "%s: claim %s holds a control character, header not set", f.header, f.pathText)
			}
			continue
		}
		if out == nil {
			out = make([]Header, 0, len(p.forwards))
		}
		out = append(out, Header{Name: f.header, Value: string(v)})
		if tr != nil {
			tr.add("forward", true, "%s: %s", f.header, shorten(v))
		}
	}
	return out
}

// safeHeaderValue refuses control characters other than TAB: a CR or LF in
// a forwarded claim would split the header (response splitting), a NUL
// truncates it in some proxies.
func safeHeaderValue(v []byte) bool {
	for _, c := range v {
		if (c < 0x20 && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func timeUnix(sec, nsec int64) string {
	return time.Unix(sec, nsec).UTC().Format(time.RFC3339)
}
