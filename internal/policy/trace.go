package policy

import (
	"fmt"
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
func shorten(b []byte) string {
	cut := false
	if len(b) > maxShownValue {
		n := maxShownValue
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
