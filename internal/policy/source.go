package policy

import (
	"net/http"
	"strings"
)

// tokenSource is a compiled spec.tokenSources entry.
type tokenSource struct {
	// header: canonical header name (set for a header source).
	header string
	// scheme: the prefix without its trailing spaces ("Bearer"); "" means
	// the whole header value is the token.
	scheme string
	// cookie: cookie name (set for a cookie source).
	cookie string
	// desc names the source in explain output.
	desc string
}

// sourceResult is what token extraction found.
type sourceResult uint8

const (
	sourceAbsent    sourceResult = iota // not present: try the next source
	sourceToken                         // a token was read
	sourceMalformed                     // present but unusable: token_malformed
)

// extract reads the token of one source. Only the first present source is
// used, so a later source can never rescue (or be confused with) an invalid
// earlier one. The token is a substring of the header value: no allocation.
func (s *tokenSource) extract(h http.Header) (string, sourceResult, string) {
	if s.cookie != "" {
		return extractCookie(h["Cookie"], s.cookie)
	}
	values := h[s.header]
	if len(values) == 0 {
		return "", sourceAbsent, ""
	}
	tok, res := "", sourceAbsent
	present := 0
	for _, v := range values {
		t, r := s.fromValue(v)
		if r != sourceAbsent {
			present++
			tok, res = t, r
		}
	}
	switch {
	case present == 0:
		return "", sourceAbsent, ""
	case len(values) > 1:
		// Two Authorization headers are two candidate credentials; which one
		// a proxy forwards upstream is not ours to guess.
		return "", sourceMalformed, "header " + s.header + " is repeated"
	case res == sourceMalformed:
		return "", sourceMalformed, "header " + s.header + " holds the scheme but no token"
	}
	return tok, res, ""
}

// fromValue applies the scheme rule to one header value: the scheme, matched
// case-insensitively, then one or more spaces, then the token. Another scheme
// (or the scheme glued to the token, "Bearertoken") is absent.
func (s *tokenSource) fromValue(v string) (string, sourceResult) {
	if s.scheme == "" {
		v = trimSpaceTab(v)
		if v == "" {
			return "", sourceMalformed
		}
		return v, sourceToken
	}
	if len(v) < len(s.scheme) || !strings.EqualFold(v[:len(s.scheme)], s.scheme) {
		return "", sourceAbsent
	}
	rest := v[len(s.scheme):]
	if rest == "" {
		return "", sourceMalformed // the scheme alone
	}
	if rest[0] != ' ' {
		return "", sourceAbsent
	}
	rest = trimSpaceTab(rest)
	if rest == "" {
		return "", sourceMalformed
	}
	return rest, sourceToken
}

func trimSpaceTab(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// extractCookie finds the cookie called name in every Cookie header line
// (RFC 6265 §5.4: "name=value" pairs separated by ";"). It parses in place
// instead of using http.Request.Cookies, which allocates every cookie.
func extractCookie(lines []string, name string) (string, sourceResult, string) {
	found := 0
	var tok string
	for _, line := range lines {
		for line != "" {
			var part string
			if i := strings.IndexByte(line, ';'); i >= 0 {
				part, line = line[:i], line[i+1:]
			} else {
				part, line = line, ""
			}
			part = trimSpaceTab(part)
			eq := strings.IndexByte(part, '=')
			if eq < 0 || trimSpaceTab(part[:eq]) != name {
				continue
			}
			found++
			tok = trimSpaceTab(part[eq+1:])
			if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
				tok = tok[1 : len(tok)-1]
			}
		}
	}
	switch {
	case found == 0:
		return "", sourceAbsent, ""
	case found > 1:
		return "", sourceMalformed, "cookie " + name + " is repeated"
	case tok == "":
		return "", sourceMalformed, "cookie " + name + " is empty"
	}
	return tok, sourceToken, ""
}
