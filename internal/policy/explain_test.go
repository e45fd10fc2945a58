package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func stepNames(tr *Trace) []string {
	var out []string
	for _, s := range tr.Steps {
		out = append(out, s.Name)
	}
	return out
}

func TestExplainAllowed(t *testing.T) {
	spec := baseSpec()
	spec.Rules = []authv1alpha1.Rule{{Expression: "claims.exp > claims.iat", Message: "exp after iat"}}
	p := mustCompile(t, spec, testOptions())
	tok := fixtures().signer("RS256").token(t, map[string]any{"jku": "https://attacker.example/jwks"}, claims())
	d, tr := p.Explain(bearer(tok))
	if !d.Allowed {
		t.Fatalf("decision = %+v", d)
	}
	want := []string{"public_path", "token_source", "size", "structure", "header", "payload", "issuer", "alg", "key", "signature",
		"exp", "nbf", "iat", "audience", "claim[0]", "claim[1]", "claim[2]", "rule[0]", "forward", "forward"}
	if diff := cmp.Diff(want, stepNames(tr)); diff != "" {
		t.Errorf("steps (-want +got):\n%s", diff)
	}
	for _, s := range tr.Steps {
		if !s.OK {
			t.Errorf("step %s not OK: %s", s.Name, s.Detail)
		}
	}
	if tr.Policy != "shop/orders" || tr.Mode != "Enforce" {
		t.Errorf("trace policy/mode = %q/%q", tr.Policy, tr.Mode)
	}
	var details []string
	for _, s := range tr.Steps {
		details = append(details, s.Detail)
	}
	text := strings.Join(details, "\n")
	for _, want := range []string{`"jku" ignored`, "kid \"rsa1\"", "RSA", "skew 30s", "exp 1800003600 (2027-01-15T09:00:00Z)", `"user-1234"`} {
		if !strings.Contains(text, want) {
			t.Errorf("trace lacks %q:\n%s", want, text)
		}
	}
	assertNoSecrets(t, tr, tok)
}

func TestExplainDenied(t *testing.T) {
	p := mustCompile(t, baseSpec(), testOptions())
	long := strings.Repeat("very-long-secret-looking-value-", 10)
	tok := fixtures().signer("ES256").token(t, nil, withClaims(func(m map[string]any) {
		m["email_verified"] = long
	}))
	d, tr := p.Explain(bearer(tok))
	if d.Reason != ClaimMismatch {
		t.Fatalf("decision = %+v", d)
	}
	last := tr.Steps[len(tr.Steps)-1]
	if last.Name != "claim[2]" || last.OK {
		t.Errorf("last step = %+v", last)
	}
	if strings.Contains(last.Detail, long) || !strings.Contains(last.Detail, "…") {
		t.Errorf("claim value not shortened: %s", last.Detail)
	}
	assertNoSecrets(t, tr, tok)
	// Decide and Explain agree.
	if got := p.Decide(bearer(tok)); got.Reason != d.Reason || got.Description != d.Description {
		t.Errorf("Decide = %+v, Explain = %+v", got, d)
	}
}

func TestExplainEveryFailureHasAFailedStep(t *testing.T) {
	k := fixtures()
	p := mustCompile(t, baseSpec(), testOptions())
	toks := map[string]*Request{
		"missing":   {},
		"malformed": bearer("a.b"),
		"iss":       bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["iss"] = "x" }))),
		"sig":       bearer(signer{"RS256", k.attacker, "rsa1"}.token(t, nil, claims())),
		"kid":       bearer(signer{"RS256", k.rsa, "zzz"}.token(t, nil, claims())),
		"expired":   bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["exp"] = 1 }))),
		"audience":  bearer(k.signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["aud"] = "x" }))),
	}
	for name, req := range toks {
		t.Run(name, func(t *testing.T) {
			d, tr := p.Explain(req)
			if d.Allowed {
				t.Fatalf("allowed: %+v", d)
			}
			last := tr.Steps[len(tr.Steps)-1]
			if last.OK {
				t.Errorf("last step %+v is OK for denial %s", last, d.Reason)
			}
			if _, err := json.Marshal(tr); err != nil {
				t.Errorf("trace is not JSON-serialisable: %v", err)
			}
		})
	}
}

func traceText(tr *Trace) string {
	b, _ := json.Marshal(tr)
	return string(b)
}

// assertNoSecrets checks that neither the token nor its signature appear.
func assertNoSecrets(t *testing.T, tr *Trace, tok string) {
	t.Helper()
	text := traceText(tr)
	parts := strings.Split(tok, ".")
	for _, p := range append(parts, tok) {
		if len(p) > 16 && strings.Contains(text, p) {
			t.Errorf("trace holds a token part")
		}
	}
}

func TestIssuerHint(t *testing.T) {
	issuers := []string{"https://idp.example.com/realms/shop", "https://Login.Example.com"}
	for _, tc := range []struct{ iss, want string }{
		{"https://idp.example.com/realms/shop/", `only by a trailing "/"`},
		{"http://login.example.com", "only by letter case or scheme"},
		{"https://other.example.com", ""},
	} {
		got := issuerHint(tc.iss, issuers)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("issuerHint(%q) = %q, want it to say %q", tc.iss, got, tc.want)
		}
	}
}

func TestShownValues(t *testing.T) {
	if got := quoteList([]string{"a", `b"c`}); got != `["a", "b\"c"]` {
		t.Errorf("quoteList: %s", got)
	}
	if got := valuesSuffix(nil); got != "" {
		t.Errorf("valuesSuffix(nil) = %q", got)
	}
	if got := shortenRaw([]byte("[1,\n2]")); got != "[1, 2]" {
		t.Errorf("shortenRaw folds whitespace: %q", got)
	}
	if got := shortenRaw([]byte(strings.Repeat("9", 40))); got != strings.Repeat("9", maxShownValue)+"…" {
		t.Errorf("shortenRaw cuts: %q", got)
	}
}
