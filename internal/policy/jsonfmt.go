package policy

import (
	"bytes"
	"slices"
)

// forwardValue formats a claim for a header: a string as is, an array's
// elements joined with "," (strings as is, others as compact JSON), an
// object as compact JSON with sorted keys, anything else as written.
func (d *jsonDoc) forwardValue(n int32) []byte {
	switch d.nodes[n].kind {
	case jsonString:
		return d.strVal(n)
	case jsonArray:
		b := make([]byte, 0, d.nodes[n].end-d.nodes[n].start)
		for e := d.nodes[n].first; e >= 0; e = d.nodes[e].next {
			if e != d.nodes[n].first {
				b = append(b, ',')
			}
			if d.nodes[e].kind == jsonString {
				b = append(b, d.strVal(e)...)
			} else {
				b = d.appendCompact(b, e)
			}
		}
		return b
	case jsonObject:
		return d.appendCompact(nil, n)
	}
	return d.raw(n)
}

// appendCompact writes a value as compact JSON, object keys sorted, strings
// re-escaped (so control characters inside become \uXXXX escapes).
func (d *jsonDoc) appendCompact(b []byte, n int32) []byte {
	nd := &d.nodes[n]
	switch nd.kind {
	case jsonObject:
		members := make([]int32, 0, nd.count)
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			members = append(members, c)
		}
		slices.SortFunc(members, func(a, b int32) int { return bytes.Compare(d.key(a), d.key(b)) })
		b = append(b, '{')
		for i, c := range members {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, d.key(c))
			b = append(b, ':')
			b = d.appendCompact(b, c)
		}
		return append(b, '}')
	case jsonArray:
		b = append(b, '[')
		for c := nd.first; c >= 0; c = d.nodes[c].next {
			if c != nd.first {
				b = append(b, ',')
			}
			b = d.appendCompact(b, c)
		}
		return append(b, ']')
	case jsonString:
		return appendJSONString(b, d.strVal(n))
	}
	return append(b, d.raw(n)...)
}

func appendJSONString(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c == 0x7f:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}
