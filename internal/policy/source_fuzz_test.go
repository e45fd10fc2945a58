package policy

import (
	"net/http"
	"strings"
	"testing"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// sourceOutcome is what token extraction decided: "token", "malformed" or "missing".
type sourceOutcome struct {
	kind  string
	token string
}

// contractSources is the contract's token-source rule, written out independently of
// source.go, for a policy whose sources are the Authorization header with the Bearer scheme,
// then the cookie access_token, then the X-Token header without a scheme:
//   - the first source that is present is used, and only it;
//   - a header source is present when the header starts with the scheme, matched
//     case-insensitively, followed by one or more spaces; the scheme alone, or followed by
//     spaces only, is token_malformed; another scheme, or the scheme glued to the token, is
//     absent; a repeated header holding a present value is token_malformed;
//   - a header source without a scheme is present when the header is there; an empty value
//     (spaces and tabs only) is token_malformed;
//   - a cookie is present when a "name=value" pair of a Cookie line has the name; the name
//     twice is token_malformed, an empty value too; a quoted value loses its quotes.
func contractSources(h http.Header) sourceOutcome {
	trim := func(s string) string { return strings.Trim(s, " \t") }
	// Authorization, scheme "Bearer".
	if vals := h["Authorization"]; len(vals) > 0 {
		present, out := 0, sourceOutcome{}
		for _, v := range vals {
			if len(v) < 6 || !strings.EqualFold(v[:6], "bearer") {
				continue
			}
			rest := v[6:]
			switch {
			case rest == "":
				present++
				out = sourceOutcome{kind: "malformed"}
			case rest[0] != ' ':
			case trim(rest) == "":
				present++
				out = sourceOutcome{kind: "malformed"}
			default:
				present++
				out = sourceOutcome{kind: "token", token: trim(rest)}
			}
		}
		switch {
		case present > 0 && len(vals) > 1:
			return sourceOutcome{kind: "malformed"}
		case present > 0:
			return out
		}
	}
	// Cookie access_token.
	found, tok := 0, ""
	for _, line := range h["Cookie"] {
		for _, part := range strings.Split(line, ";") {
			name, value, ok := strings.Cut(trim(part), "=")
			if !ok || trim(name) != "access_token" {
				continue
			}
			found++
			tok = trim(value)
			if len(tok) >= 2 && tok[0] == '"' && tok[len(tok)-1] == '"' {
				tok = tok[1 : len(tok)-1]
			}
		}
	}
	switch {
	case found > 1:
		return sourceOutcome{kind: "malformed"}
	case found == 1 && tok == "":
		return sourceOutcome{kind: "malformed"}
	case found == 1:
		return sourceOutcome{kind: "token", token: tok}
	}
	// X-Token, no scheme: the whole value.
	if vals := h["X-Token"]; len(vals) > 0 {
		switch {
		case len(vals) > 1:
			return sourceOutcome{kind: "malformed"}
		case trim(vals[0]) == "":
			return sourceOutcome{kind: "malformed"}
		default:
			return sourceOutcome{kind: "token", token: trim(vals[0])}
		}
	}
	return sourceOutcome{kind: "missing"}
}

// FuzzTokenSources compares the token extraction of a policy with three sources (a header
// with a scheme, a cookie, a header without a scheme) against the contract's rule written out
// independently, on arbitrary Authorization values (one or two), Cookie lines and X-Token
// values. Seeds are in testdata/fuzz/FuzzTokenSources. It also checks that the whole decision
// then carries token_missing or token_malformed exactly when extraction said so.
func FuzzTokenSources(f *testing.F) {
	for _, s := range [][4]string{
		{"Bearer abc", "", "", ""},
		{"bearer   abc  ", "x", "access_token=zzz", ""},
		{"Bearer", "", "", ""},
		{"Bearertoken", "", "access_token=\"q\"", ""},
		{"Basic dXNlcg==", "", "a=b; access_token=t1; access_token=t2", "raw"},
		{"Bearer \t", "", "", " \t"},
		{"", "", "access_token=", "x"},
		{"BEARER a", "Bearer b", "", ""},
		{"", "", " access_token = \"\" ", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	spec := baseSpec()
	spec.TokenSources = []authv1alpha1.TokenSource{
		{Header: &authv1alpha1.HeaderTokenSource{Name: "Authorization", Prefix: "Bearer "}},
		{Cookie: &authv1alpha1.CookieTokenSource{Name: "access_token"}},
		{Header: &authv1alpha1.HeaderTokenSource{Name: "X-Token"}},
	}
	p := mustCompile(f, spec, testOptions())
	f.Fuzz(func(t *testing.T, auth, auth2, cookie, xtoken string) {
		h := http.Header{}
		if auth != "" {
			h["Authorization"] = []string{auth}
			if auth2 != "" {
				h["Authorization"] = append(h["Authorization"], auth2)
			}
		}
		if cookie != "" {
			h["Cookie"] = []string{cookie}
		}
		if xtoken != "" {
			h["X-Token"] = []string{xtoken}
		}
		want := contractSources(h)
		tok, d, ok := p.extractToken(h, nil)
		got := sourceOutcome{kind: "token", token: tok}
		switch {
		case ok:
		case d.reason == TokenMissing:
			got = sourceOutcome{kind: "missing"}
		case d.reason == TokenMalformed:
			got = sourceOutcome{kind: "malformed"}
		default:
			t.Fatalf("extraction failed with %q", d.reason)
		}
		if got != want {
			t.Fatalf("headers %q: extraction %+v, contract %+v", h, got, want)
		}
		dec := p.Decide(&Request{Header: h, Path: "/orders"})
		switch want.kind {
		case "missing":
			if dec.Reason != TokenMissing {
				t.Fatalf("no token: decision %s", dec.Reason)
			}
		case "malformed":
			if dec.Reason != TokenMalformed {
				t.Fatalf("malformed source: decision %s", dec.Reason)
			}
		default:
			if dec.Reason == TokenMissing {
				t.Fatalf("a token was read but the decision says token_missing")
			}
		}
	})
}
