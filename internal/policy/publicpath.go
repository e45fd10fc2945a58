package policy

import "strings"

// NormalizePublicPath returns raw after one percent-decoding, and ok=false
// when the path cannot be normalised unambiguously. A public path lets a
// request through without a token, so any doubt means "not public": the
// ingress controller, the proxy and the upstream may each resolve "..",
// "%2F", "\" or ";" differently, and an attacker picks the reading that
// reaches a protected handler while we see a public one.
//
// Refused: a path not starting with "/"; "\" or ";" literal or encoded; an
// encoded "/"; bad percent-encoding; a "%" left after decoding (double
// encoding); "." or ".." segments (also when encoded); repeated slashes;
// control characters.
func NormalizePublicPath(raw string) (string, bool) {
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	// Fast path: nothing to decode, so the checks run on raw itself and no
	// allocation is needed.
	if strings.IndexByte(raw, '%') < 0 {
		if !cleanPath(raw) {
			return "", false
		}
		return raw, true
	}
	b := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '%' {
			b = append(b, c)
			continue
		}
		if i+2 >= len(raw) {
			return "", false
		}
		hi, ok1 := unhex(raw[i+1])
		lo, ok2 := unhex(raw[i+2])
		if !ok1 || !ok2 {
			return "", false
		}
		d := hi<<4 | lo
		if d == '/' {
			// An encoded slash is a different path to some servers and the
			// same to others.
			return "", false
		}
		b = append(b, d)
		i += 2
	}
	s := string(b)
	if strings.IndexByte(s, '%') >= 0 || !cleanPath(s) {
		return "", false
	}
	return s, true
}

// cleanPath checks a decoded path: no "\" ";" or control characters, no
// repeated slashes, no "." or ".." segments.
func cleanPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '\\' || c == ';' || c < 0x20 || c == 0x7f {
			return false
		}
		if c != '/' {
			continue
		}
		// p[i] is a slash: look at the segment that follows it.
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		seg := p[i+1 : j]
		if seg == "." || seg == ".." {
			return false
		}
		if seg == "" && j < len(p) {
			return false // "//"
		}
	}
	return true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// publicMatcher holds the policy's public paths, split into exact paths and
// prefixes at compile time.
type publicMatcher struct {
	exact    []string
	prefixes []string
}

// match reports whether the request path is public.
func (m *publicMatcher) match(r *Request) bool {
	if len(m.exact) == 0 && len(m.prefixes) == 0 {
		return false
	}
	if r.PathConflict {
		return false
	}
	p, ok := NormalizePublicPath(r.Path)
	if !ok {
		return false
	}
	for _, e := range m.exact {
		if p == e {
			return true
		}
	}
	for _, pre := range m.prefixes {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}
