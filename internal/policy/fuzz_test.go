package policy

import (
	"net/http"
	"testing"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// fuzzPolicy has every feature switched on, so fuzzed tokens reach every check.
func fuzzPolicy(t testing.TB) *Policy {
	return mustCompile(t, fuzzSpec(), testOptions())
}

// fuzzSpec is fuzzPolicy's spec.
func fuzzSpec() *authv1alpha1.JWTPolicySpec {
	spec := baseSpec()
	spec.RequiredClaims = append(spec.RequiredClaims,
		authv1alpha1.RequiredClaim{Claim: "scope", Operator: authv1alpha1.OpContainsAll, Values: []string{"openid"}},
		authv1alpha1.RequiredClaim{Claim: "email", Operator: authv1alpha1.OpMatches, Values: []string{`@example\.com$`}},
		authv1alpha1.RequiredClaim{Claim: "tenant", Operator: authv1alpha1.OpNotIn, Values: []string{"blocked"}},
		authv1alpha1.RequiredClaim{Claim: "banned", Operator: authv1alpha1.OpDoesNotExist},
	)
	spec.Rules = []authv1alpha1.Rule{{Expression: "size(claims) < 40 && claims.exp - claims.iat <= 86400", Message: "too big"}}
	spec.ForwardClaims = append(spec.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "realm_access", Header: "X-Realm"})
	return spec
}

// checkDecision asserts the invariants every decision keeps.
func checkDecision(t *testing.T, d Decision) {
	t.Helper()
	switch {
	case d.Allowed && d.Reason != "":
		t.Fatalf("allowed with reason %q in Enforce mode", d.Reason)
	case d.Allowed && d.Status != 200:
		t.Fatalf("allowed with status %d", d.Status)
	case !d.Allowed && !d.Reason.Valid():
		t.Fatalf("denied with invalid reason %q", d.Reason)
	case !d.Allowed && d.Status != contractStatus[d.Reason]:
		t.Fatalf("reason %s with status %d", d.Reason, d.Status)
	case !d.Allowed && d.Headers != nil:
		t.Fatalf("denied with headers")
	case !d.Allowed && d.Reason != TokenMissing && d.Description == "":
		t.Fatalf("reason %s without description", d.Reason)
	}
	for _, h := range d.Headers {
		if !safeHeaderValue([]byte(h.Value)) {
			t.Fatalf("header %s carries a control character", h.Name)
		}
	}
}

func FuzzDecide(f *testing.F) {
	k := fixtures()
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "PS256"} {
		f.Add(k.signer(alg).token(f, nil, claims()), "", "")
	}
	f.Add("", `{"alg":"HS256","kid":"hs1"}`, `{"iss":"https://hs.example.com","sub":"x","exp":1800003600,"realm_access":{"roles":["admin"]},"email_verified":true,"scope":"openid","email":"a@example.com"}`)
	f.Add("", `{"alg":"HS256"}`, `{"iss":"https://hs.example.com","exp":1e400}`)
	f.Add("a.b.c", `{"alg":"HS256","crit":["b64"]}`, `{"iss":"https://hs.example.com","a":{"a":{"a":[[[[1]]]]}}}`)
	f.Add("eyJhbGciOiJub25lIn0.e30.", `{"alg":"none"}`, `{}`)
	p := fuzzPolicy(f)
	hs := k.signer("HS256")
	f.Fuzz(func(t *testing.T, tok, header, payload string) {
		// 1: the raw string as a token.
		d := p.Decide(bearer(tok))
		checkDecision(t, d)
		if e, _ := p.Explain(bearer(tok)); e.Reason != d.Reason {
			t.Fatalf("Decide says %q, Explain %q", d.Reason, e.Reason)
		}
		// 2: a genuinely signed token around fuzzed JSON, so the claim
		// checks, rules and header formatting see arbitrary payloads.
		signed := hs.raw(t, header, payload)
		req := &Request{Header: http.Header{"Authorization": {"Bearer " + signed}}, Path: "/x"}
		d = p.Decide(req)
		checkDecision(t, d)
		if e, _ := p.Explain(req); e.Reason != d.Reason {
			t.Fatalf("Decide says %q, Explain %q", d.Reason, e.Reason)
		}
	})
}
