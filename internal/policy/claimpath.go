package policy

import (
	"errors"
	"strings"
)

// ClaimPath is a parsed claim path: the object keys leading from the payload
// to a claim.
//
// The syntax: segments are separated by an unescaped "."; inside a segment
// "\." is a literal dot and "\\" a literal backslash. Any other backslash
// escape, a trailing backslash, or an empty segment (a leading, trailing or
// doubled dot, or an empty path) is an error, so every path has exactly one
// meaning and FormatClaimPath(ParseClaimPath(p)) == p.
type ClaimPath []string

// Errors of ParseClaimPath.
var (
	ErrClaimPathEmptySegment = errors.New(`empty segment (a leading, trailing or doubled "."); write a dot inside a key as "\."`)
	ErrClaimPathBadEscape    = errors.New(`invalid escape: only "\." (a literal dot) and "\\" (a literal backslash) are allowed`)
)

// ParseClaimPath splits a claim path into its keys.
func ParseClaimPath(s string) (ClaimPath, error) {
	if s == "" {
		return nil, ErrClaimPathEmptySegment
	}
	var out ClaimPath
	var seg strings.Builder
	escaped := false // the current segment needed unescaping
	start := 0
	flush := func(end int) error {
		if escaped {
			if seg.Len() == 0 {
				return ErrClaimPathEmptySegment
			}
			out = append(out, seg.String())
		} else {
			if end == start {
				return ErrClaimPathEmptySegment
			}
			out = append(out, s[start:end])
		}
		seg.Reset()
		escaped = false
		return nil
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '.':
			if err := flush(i); err != nil {
				return nil, err
			}
			start = i + 1
		case '\\':
			if i+1 >= len(s) || (s[i+1] != '.' && s[i+1] != '\\') {
				return nil, ErrClaimPathBadEscape
			}
			if !escaped {
				escaped = true
				seg.WriteString(s[start:i])
			}
			seg.WriteByte(s[i+1])
			i++
		default:
			if escaped {
				seg.WriteByte(s[i])
			}
		}
	}
	if err := flush(len(s)); err != nil {
		return nil, err
	}
	return out, nil
}

// String formats the path back into its escaped form.
func (p ClaimPath) String() string {
	var b strings.Builder
	for i, seg := range p {
		if i > 0 {
			b.WriteByte('.')
		}
		for j := 0; j < len(seg); j++ {
			if seg[j] == '.' || seg[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(seg[j])
		}
	}
	return b.String()
}

// lookupResult says what a claim path found.
type lookupResult uint8

const (
	claimFound   lookupResult = iota // the node is the claim (may be JSON null)
	claimAbsent                      // the last key is absent
	claimBlocked                     // the path runs through a non-object
)

// lookup walks path from the payload root.
func (d *jsonDoc) lookup(path ClaimPath) (int32, lookupResult) {
	cur := int32(0)
	for _, seg := range path {
		if d.nodes[cur].kind != jsonObject {
			return -1, claimBlocked
		}
		cur = d.member(cur, seg)
		if cur < 0 {
			return -1, claimAbsent
		}
	}
	return cur, claimFound
}
