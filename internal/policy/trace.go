package policy

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Trace is the step-by-step record of one decision, produced by Explain. It
// never holds the token, a key or a whole claim value: claim values are
// shortened to a few dozen characters.
type Trace struct {
	// Policy is "namespace/name".
	Policy string `json:"policy"`
	// Mode is the policy's mode (Enforce or Audit).
	Mode string `json:"mode"`
	// Steps are the checks in the order they ran; the last failing one
	// holds the reason.
	Steps []Step `json:"steps"`
}

// Step is one check of a Trace.
type Step struct {
	// Name is the check: token_source, size, structure, header, payload,
	// issuer, alg, key, signature, exp, nbf, iat, audience, claim[i], rule[i],
	// forward, public_path, mode.
	Name string `json:"name"`
	// OK is false for the check that decided a denial.
	OK bool `json:"ok"`
	// Detail says what was found, in words.
	Detail string `json:"detail"`
}

// add records a step; t may be nil (Decide), which costs one branch.
func (t *Trace) add(name string, ok bool, format string, args ...any) {
	if t == nil {
		return
	}
	t.Steps = append(t.Steps, Step{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

// maxShownValue bounds claim values and header fields quoted in traces.
const maxShownValue = 32

// shorten quotes at most maxShownValue characters of a value for a trace,
// with control characters escaped, and marks a cut with "…".
func shorten(b []byte) string { return shortenN(b, maxShownValue) }

// maxShownIssuer bounds an "iss" quoted in a trace: issuers are
// configuration, not secrets, and the whole string is what tells a trailing
// "/" or a wrong realm apart.
const maxShownIssuer = 256

// shortenN is shorten with its own bound.
func shortenN(b []byte, n int) string {
	cut := false
	if len(b) > n {
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b, cut = b[:n], true
	}
	s := fmt.Sprintf("%q", b)
	if cut {
		s += "…"
	}
	return s
}

// shortenRaw shows raw JSON text (an array, object, number or literal) as it
// appears in the token, cut to maxShownValue characters. JSON text holds no
// raw control characters outside strings but whitespace, which is folded to
// spaces so a trace line stays one line.
func shortenRaw(b []byte) string {
	cut := false
	if len(b) > maxShownValue {
		n := maxShownValue
		for n > 0 && !utf8.RuneStart(b[n]) {
			n--
		}
		b, cut = b[:n], true
	}
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		out[i] = c
	}
	s := string(out)
	if cut {
		s += "…"
	}
	return s
}

// shownValue shows a claim found in the payload: a string quoted, anything
// else as its JSON text.
func shownValue(d *jsonDoc, n int32) string {
	if d.nodes[n].kind == jsonString {
		return shorten(d.text(n))
	}
	return shortenRaw(d.raw(n))
}

// valuesSuffix renders a required claim's values after its operator, nothing
// for Exists and DoesNotExist.
func valuesSuffix(values []string) string {
	if len(values) == 0 {
		return ""
	}
	return " " + quoteList(values)
}

// quoteList renders strings as a JSON-like list: ["a", "b"].
func quoteList(values []string) string {
	b := make([]byte, 0, 16*len(values))
	b = append(b, '[')
	for i, v := range values {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendQuote(b, v)
	}
	return string(append(b, ']'))
}

// issuerHint points at the near miss behind most issuer_mismatch reports:
// an "iss" that differs from a configured issuer only by a trailing "/", by
// letter case or by its scheme.
func issuerHint(iss string, issuers []string) string {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimRight(s, "/"))
		s = strings.TrimPrefix(s, "https://")
		return strings.TrimPrefix(s, "http://")
	}
	for _, want := range issuers {
		switch {
		case strings.TrimRight(iss, "/") == strings.TrimRight(want, "/"):
			return fmt.Sprintf(` (it differs from %q only by a trailing "/")`, want)
		case norm(iss) == norm(want):
			return fmt.Sprintf(" (it differs from %q only by letter case or scheme)", want)
		}
	}
	return ""
}

// issuerNames lists the policy's issuers, for traces.
func (p *Policy) issuerNames() []string {
	names := make([]string, len(p.issuers))
	for i, is := range p.issuers {
		names[i] = is.name
	}
	return names
}
