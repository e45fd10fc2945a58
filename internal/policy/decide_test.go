package policy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// contractStatus is the status column of CONTRACT.md's reason table, written
// out independently of Reason.Status.
var contractStatus = map[Reason]int{
	TokenMissing: 401, TokenMalformed: 401, TokenTooLarge: 401, AlgNotAllowed: 401,
	KeyNotFound: 401, KeysUnavailable: 401, SignatureInvalid: 401, ExpiryMissing: 401,
	TokenExpired: 401, TokenNotYetValid: 401, TokenIssuedInFuture: 401, IssuerMismatch: 401,
	AudienceMismatch: 401, ClaimMissing: 403, ClaimMismatch: 403, RuleFailed: 403,
	PolicyNotFound: 403,
}

func TestReasonStatus(t *testing.T) {
	if len(AllReasons()) != len(contractStatus) {
		t.Fatalf("AllReasons has %d codes, the contract %d", len(AllReasons()), len(contractStatus))
	}
	for _, r := range AllReasons() {
		want, ok := contractStatus[r]
		if !ok {
			t.Errorf("reason %q is not in the contract", r)
			continue
		}
		if got := r.Status(); got != want {
			t.Errorf("%s.Status() = %d, want %d", r, got, want)
		}
		if !r.Valid() {
			t.Errorf("%s.Valid() = false", r)
		}
	}
	if Reason("bogus").Valid() {
		t.Error(`Reason("bogus").Valid() = true`)
	}
	if got := Reason("").Status(); got != 200 {
		t.Errorf(`Reason("").Status() = %d, want 200`, got)
	}
}

func TestChallenge(t *testing.T) {
	tests := []struct {
		r    Reason
		desc string
		want string
	}{
		{TokenMissing, "", `Bearer realm="claimguard"`},
		{TokenExpired, "the token has expired", `Bearer error="invalid_token", error_description="the token has expired"`},
		{ClaimMissing, `claim "a" is missing`, `Bearer error="insufficient_scope", error_description="claim \"a\" is missing"`},
		{RuleFailed, "bad\r\nInjected: x\\", `Bearer error="insufficient_scope", error_description="badInjected: x\\"`},
	}
	for _, tt := range tests {
		if got := Challenge(tt.r, tt.desc); got != tt.want {
			t.Errorf("Challenge(%s, %q) = %s, want %s", tt.r, tt.desc, got, tt.want)
		}
	}
}

// reasonCase is one row of the reason table: a spec change and a request.
type reasonCase struct {
	name string
	spec func(s *authv1alpha1.JWTPolicySpec)
	req  func(t *testing.T) *Request
	want Reason
}

func TestDecideEveryReason(t *testing.T) {
	k := fixtures()
	rs := k.signer("RS256")
	tok := func(mod func(m map[string]any)) func(t *testing.T) *Request {
		return func(t *testing.T) *Request { return bearer(rs.token(t, nil, withClaims(mod))) }
	}
	valid := rs.token(t, nil, claims())
	parts := strings.Split(valid, ".")
	cases := []reasonCase{
		{name: "allowed", req: tok(func(map[string]any) {}), want: ""},
		{name: "token_missing", req: func(*testing.T) *Request { return &Request{Header: http.Header{}} }, want: TokenMissing},
		{name: "token_malformed two parts", req: func(*testing.T) *Request { return bearer(parts[0] + "." + parts[1]) }, want: TokenMalformed},
		{name: "token_too_large", req: tok(func(m map[string]any) { m["pad"] = strings.Repeat("x", 9000) }), want: TokenTooLarge},
		{name: "alg_not_allowed", req: func(t *testing.T) *Request {
			return bearer(signer{"HS256", k.hmac, ""}.token(t, nil, claims()))
		}, want: AlgNotAllowed},
		{name: "key_not_found", req: func(t *testing.T) *Request {
			return bearer(signer{"RS256", k.rsa, "nope"}.token(t, nil, claims()))
		}, want: KeyNotFound},
		{name: "keys_unavailable", spec: func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"RS256", "HS256"}
			s.Issuers[0].JWKS = authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "absent", Key: "jwks.json"}}
		}, req: tok(func(map[string]any) {}), want: KeysUnavailable},
		{name: "signature_invalid", req: func(t *testing.T) *Request {
			return bearer(signer{"RS256", k.attacker, "rsa1"}.token(t, nil, claims()))
		}, want: SignatureInvalid},
		{name: "expiry_missing", req: tok(func(m map[string]any) { delete(m, "exp") }), want: ExpiryMissing},
		{name: "token_expired", req: tok(func(m map[string]any) { m["exp"] = testNow.Unix() - 31 }), want: TokenExpired},
		{name: "token_not_yet_valid", req: tok(func(m map[string]any) { m["nbf"] = testNow.Unix() + 31 }), want: TokenNotYetValid},
		{name: "token_issued_in_future", req: tok(func(m map[string]any) { m["iat"] = testNow.Unix() + 31 }), want: TokenIssuedInFuture},
		{name: "issuer_mismatch", req: tok(func(m map[string]any) { m["iss"] = "https://evil.example.com" }), want: IssuerMismatch},
		{name: "audience_mismatch", req: tok(func(m map[string]any) { m["aud"] = "other" }), want: AudienceMismatch},
		{name: "claim_missing", req: tok(func(m map[string]any) { delete(m, "sub") }), want: ClaimMissing},
		{name: "claim_mismatch", req: tok(func(m map[string]any) { m["email_verified"] = false }), want: ClaimMismatch},
		{name: "rule_failed", spec: func(s *authv1alpha1.JWTPolicySpec) {
			s.Rules = []authv1alpha1.Rule{{Expression: "claims.exp - claims.iat <= 60", Message: "token lifetime longer than a minute"}}
		}, req: tok(func(map[string]any) {}), want: RuleFailed},
	}
	seen := map[Reason]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			spec := baseSpec()
			if tc.spec != nil {
				tc.spec(spec)
			}
			p := mustCompile(t, spec, testOptions())
			d := p.Decide(tc.req(t))
			seen[tc.want] = true
			if d.Reason != tc.want {
				t.Fatalf("reason = %q (%s), want %q", d.Reason, d.Description, tc.want)
			}
			if tc.want == "" {
				if !d.Allowed || d.Status != 200 || d.WWWAuthenticate != "" {
					t.Errorf("allowed decision = %+v", d)
				}
				return
			}
			if d.Allowed || d.Status != contractStatus[tc.want] {
				t.Errorf("decision = %+v, want denied with %d", d, contractStatus[tc.want])
			}
			if tc.want == TokenMissing {
				if d.Description != "" || d.WWWAuthenticate != `Bearer realm="claimguard"` {
					t.Errorf("token_missing must carry no description: %+v", d)
				}
				return
			}
			if d.Description == "" || !strings.Contains(d.WWWAuthenticate, `error="`) {
				t.Errorf("denial without description or error: %+v", d)
			}
			wantErr := `error="invalid_token"`
			if contractStatus[tc.want] == 403 {
				wantErr = `error="insufficient_scope"`
			}
			if !strings.Contains(d.WWWAuthenticate, wantErr) {
				t.Errorf("WWW-Authenticate %q lacks %s", d.WWWAuthenticate, wantErr)
			}
		})
	}
	// Every reason Decide can give (all but policy_not_found, which is the
	// server's) has a row.
	for _, r := range AllReasons() {
		if r != PolicyNotFound && !seen[r] {
			t.Errorf("reason %s has no case", r)
		}
	}
}

func TestDecideAllowedHeaders(t *testing.T) {
	p := mustCompile(t, baseSpec(), testOptions())
	for _, alg := range []string{"RS256", "PS256", "ES256", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			c := claims()
			if alg == "HS256" {
				c["iss"] = testHSIssuer
			}
			d := p.Decide(bearer(fixtures().signer(alg).token(t, nil, c)))
			want := Decision{Allowed: true, Status: 200, Headers: []Header{
				{Name: "X-Auth-Subject", Value: "user-1234"},
				{Name: "X-Auth-Roles", Value: "user,admin"},
			}}
			if diff := cmp.Diff(want, d); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
		})
	}
	if diff := cmp.Diff([]string{"X-Auth-Subject", "X-Auth-Roles"}, p.ForwardHeaders()); diff != "" {
		t.Errorf("ForwardHeaders (-want +got):\n%s", diff)
	}
}

func TestTimeClaimsWithSkew(t *testing.T) {
	now := testNow.Unix()
	rs := fixtures().signer("RS256")
	tests := []struct {
		name string
		skew *time.Duration
		mod  func(m map[string]any)
		want Reason
	}{
		{"exp at the skew edge", nil, func(m map[string]any) { m["exp"] = now - 30 }, ""},
		{"exp past the skew", nil, func(m map[string]any) { m["exp"] = now - 31 }, TokenExpired},
		{"exp fractional", nil, func(m map[string]any) { m["exp"] = float64(now) - 30.5 }, TokenExpired},
		{"no skew, exp now", ptr(time.Duration(0)), func(m map[string]any) { m["exp"] = now }, ""},
		{"no skew, exp a second ago", ptr(time.Duration(0)), func(m map[string]any) { m["exp"] = now - 1 }, TokenExpired},
		{"nbf within skew", nil, func(m map[string]any) { m["nbf"] = now + 30 }, ""},
		{"nbf past skew", nil, func(m map[string]any) { m["nbf"] = now + 31 }, TokenNotYetValid},
		{"iat within skew", nil, func(m map[string]any) { m["iat"] = now + 30 }, ""},
		{"iat past skew", nil, func(m map[string]any) { m["iat"] = now + 31 }, TokenIssuedInFuture},
		{"5m skew", ptr(5 * time.Minute), func(m map[string]any) { m["exp"] = now - 299 }, ""},
		{"exp string", nil, func(m map[string]any) { m["exp"] = "1900000000" }, TokenMalformed},
		{"exp null", nil, func(m map[string]any) { m["exp"] = nil }, TokenMalformed},
		{"nbf bool", nil, func(m map[string]any) { m["nbf"] = true }, TokenMalformed},
		{"iat array", nil, func(m map[string]any) { m["iat"] = []int{1} }, TokenMalformed},
		{"exp checked before nbf", nil, func(m map[string]any) { m["exp"] = now - 100; m["nbf"] = now + 100 }, TokenExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			if tt.skew != nil {
				spec.ClockSkew = duration(*tt.skew)
			}
			p := mustCompile(t, spec, testOptions())
			d := p.Decide(bearer(rs.token(t, nil, withClaims(tt.mod))))
			if d.Reason != tt.want {
				t.Errorf("reason = %q (%s), want %q", d.Reason, d.Description, tt.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRequireExpiryFalse(t *testing.T) {
	spec := baseSpec()
	spec.Issuers[0].RequireExpiry = ptr(false)
	p := mustCompile(t, spec, testOptions())
	d := p.Decide(bearer(fixtures().signer("ES256").token(t, nil, withClaims(func(m map[string]any) { delete(m, "exp") }))))
	if !d.Allowed || d.Reason != "" {
		t.Errorf("decision = %+v, want allowed", d)
	}
}

func TestRegisteredClaimTypes(t *testing.T) {
	rs := fixtures().signer("RS256")
	p := mustCompile(t, baseSpec(), testOptions())
	tests := []struct {
		name string
		mod  func(m map[string]any)
		want Reason
	}{
		{"iss number", func(m map[string]any) { m["iss"] = 5 }, TokenMalformed},
		{"iss absent", func(m map[string]any) { delete(m, "iss") }, IssuerMismatch},
		{"iss differs in case", func(m map[string]any) { m["iss"] = strings.ToUpper(testIssuer) }, IssuerMismatch},
		{"aud number", func(m map[string]any) { m["aud"] = 5 }, TokenMalformed},
		{"aud array with number", func(m map[string]any) { m["aud"] = []any{testAudience, 5} }, TokenMalformed},
		{"aud string", func(m map[string]any) { m["aud"] = testAudience }, ""},
		{"aud empty array", func(m map[string]any) { m["aud"] = []any{} }, AudienceMismatch},
		{"aud absent", func(m map[string]any) { delete(m, "aud") }, AudienceMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(bearer(rs.token(t, nil, withClaims(tt.mod))))
			if d.Reason != tt.want {
				t.Errorf("reason = %q (%s), want %q", d.Reason, d.Description, tt.want)
			}
		})
	}
	t.Run("issuer without audiences ignores aud", func(t *testing.T) {
		c := claims()
		c["iss"], c["aud"] = testHSIssuer, "whatever"
		d := p.Decide(bearer(fixtures().signer("HS256").token(t, nil, c)))
		if !d.Allowed {
			t.Errorf("decision = %+v", d)
		}
	})
}

func TestOperators(t *testing.T) {
	rs := fixtures().signer("RS256")
	payload := withClaims(func(m map[string]any) {
		m["str"] = "blue"
		m["num"] = 42
		m["big"] = json2pow53plus1{}
		m["float"] = 1.5
		m["yes"] = true
		m["nul"] = nil
		m["arr"] = []any{"a", "b", "c"}
		m["mixed"] = []any{"a", 1}
		m["obj"] = map[string]any{"k": "v", "dotted.key": "d"}
		m["esc"] = "quote\"and\\slash"
	})
	tok := rs.token(t, nil, payload)
	tests := []struct {
		claim  string
		op     authv1alpha1.ClaimOperator
		values []string
		want   Reason
	}{
		// Exists
		{"str", authv1alpha1.OpExists, nil, ""},
		{"absent", authv1alpha1.OpExists, nil, ClaimMissing},
		{"nul", authv1alpha1.OpExists, nil, ClaimMissing},
		{"str.deeper", authv1alpha1.OpExists, nil, ClaimMissing},
		{"obj.k", authv1alpha1.OpExists, nil, ""},
		{`obj.dotted\.key`, authv1alpha1.OpExists, nil, ""},
		// DoesNotExist
		{"absent", authv1alpha1.OpDoesNotExist, nil, ""},
		{"str.deeper", authv1alpha1.OpDoesNotExist, nil, ""},
		{"str", authv1alpha1.OpDoesNotExist, nil, ClaimMismatch},
		{"nul", authv1alpha1.OpDoesNotExist, nil, ClaimMismatch},
		// In
		{"str", authv1alpha1.OpIn, []string{"red", "blue"}, ""},
		{"str", authv1alpha1.OpIn, []string{"red"}, ClaimMismatch},
		{"str", authv1alpha1.OpIn, []string{`"blue"`}, ClaimMismatch},
		{"num", authv1alpha1.OpIn, []string{"42"}, ""},
		{"num", authv1alpha1.OpIn, []string{"42.0"}, ClaimMismatch},
		{"big", authv1alpha1.OpIn, []string{"9007199254740993"}, ""},
		{"big", authv1alpha1.OpIn, []string{"9007199254740992"}, ClaimMismatch},
		{"float", authv1alpha1.OpIn, []string{"1.5"}, ""},
		{"yes", authv1alpha1.OpIn, []string{"true"}, ""},
		{"yes", authv1alpha1.OpIn, []string{"True"}, ClaimMismatch},
		{"esc", authv1alpha1.OpIn, []string{`quote"and\slash`}, ""},
		{"arr", authv1alpha1.OpIn, []string{"a"}, ClaimMismatch},
		{"obj", authv1alpha1.OpIn, []string{"v"}, ClaimMismatch},
		{"absent", authv1alpha1.OpIn, []string{"a"}, ClaimMissing},
		{"nul", authv1alpha1.OpIn, []string{"null"}, ClaimMissing},
		// NotIn
		{"str", authv1alpha1.OpNotIn, []string{"red"}, ""},
		{"str", authv1alpha1.OpNotIn, []string{"blue"}, ClaimMismatch},
		{"num", authv1alpha1.OpNotIn, []string{"41"}, ""},
		{"absent", authv1alpha1.OpNotIn, []string{"x"}, ClaimMissing},
		{"nul", authv1alpha1.OpNotIn, []string{"x"}, ClaimMissing},
		{"arr", authv1alpha1.OpNotIn, []string{"x"}, ClaimMismatch},
		{"obj", authv1alpha1.OpNotIn, []string{"x"}, ClaimMismatch},
		// ContainsAny
		{"arr", authv1alpha1.OpContainsAny, []string{"x", "b"}, ""},
		{"arr", authv1alpha1.OpContainsAny, []string{"x", "y"}, ClaimMismatch},
		{"scope", authv1alpha1.OpContainsAny, []string{"orders:read"}, ""},
		{"scope", authv1alpha1.OpContainsAny, []string{"orders"}, ClaimMismatch},
		{"mixed", authv1alpha1.OpContainsAny, []string{"a"}, ClaimMismatch},
		{"num", authv1alpha1.OpContainsAny, []string{"42"}, ClaimMismatch},
		{"obj", authv1alpha1.OpContainsAny, []string{"k"}, ClaimMismatch},
		{"absent", authv1alpha1.OpContainsAny, []string{"a"}, ClaimMissing},
		// ContainsAll
		{"arr", authv1alpha1.OpContainsAll, []string{"a", "c"}, ""},
		{"arr", authv1alpha1.OpContainsAll, []string{"a", "x"}, ClaimMismatch},
		{"scope", authv1alpha1.OpContainsAll, []string{"openid", "profile"}, ""},
		{"scope", authv1alpha1.OpContainsAll, []string{"openid", "email"}, ClaimMismatch},
		{"mixed", authv1alpha1.OpContainsAll, []string{"a"}, ClaimMismatch},
		{"yes", authv1alpha1.OpContainsAll, []string{"true"}, ClaimMismatch},
		{"nul", authv1alpha1.OpContainsAll, []string{"a"}, ClaimMissing},
		// Matches
		{"email", authv1alpha1.OpMatches, []string{`^[^@]+@example\.com$`}, ""},
		{"email", authv1alpha1.OpMatches, []string{`^x`, `@example\.org$`}, ClaimMismatch},
		{"email", authv1alpha1.OpMatches, []string{`^x`, `example`}, ""},
		{"num", authv1alpha1.OpMatches, []string{`^4\d$`}, ""},
		{"arr", authv1alpha1.OpMatches, []string{`.*`}, ClaimMismatch},
		{"obj", authv1alpha1.OpMatches, []string{`.*`}, ClaimMismatch},
		{"absent", authv1alpha1.OpMatches, []string{`.*`}, ClaimMissing},
	}
	for _, tt := range tests {
		t.Run(string(tt.op)+"/"+tt.claim+"/"+strings.Join(tt.values, ","), func(t *testing.T) {
			spec := baseSpec()
			spec.RequiredClaims = []authv1alpha1.RequiredClaim{{Claim: tt.claim, Operator: tt.op, Values: tt.values}}
			p := mustCompile(t, spec, testOptions())
			d := p.Decide(bearer(tok))
			if d.Reason != tt.want {
				t.Fatalf("reason = %q (%s), want %q", d.Reason, d.Description, tt.want)
			}
			if tt.want != "" {
				if !strings.Contains(d.Description, tt.claim) {
					t.Errorf("description %q does not name the claim %q", d.Description, tt.claim)
				}
				if strings.Contains(d.Description, "blue") || strings.Contains(d.Description, "example.com") {
					t.Errorf("description %q echoes the claim value", d.Description)
				}
			}
		})
	}
}

// json2pow53plus1 marshals as 2^53+1, which float64 cannot hold.
type json2pow53plus1 struct{}

func (json2pow53plus1) MarshalJSON() ([]byte, error) { return []byte("9007199254740993"), nil }

func TestRequiredClaimsInOrder(t *testing.T) {
	spec := baseSpec()
	spec.RequiredClaims = []authv1alpha1.RequiredClaim{
		{Claim: "a", Operator: authv1alpha1.OpIn, Values: []string{"x"}},
		{Claim: "b", Operator: authv1alpha1.OpExists},
	}
	spec.Rules = []authv1alpha1.Rule{{Expression: "false", Message: "never"}}
	p := mustCompile(t, spec, testOptions())
	d := p.Decide(bearer(fixtures().signer("RS256").token(t, nil, withClaims(func(m map[string]any) { m["a"] = "y" }))))
	if d.Reason != ClaimMismatch || !strings.Contains(d.Description, `"a"`) {
		t.Errorf("decision = %+v, want claim_mismatch on a (the first failing claim)", d)
	}
}

func TestRules(t *testing.T) {
	rs := fixtures().signer("RS256")
	tests := []struct {
		name string
		expr string
		want Reason
	}{
		{"lifetime ok", "claims.exp - claims.iat <= 3610", ""},
		{"lifetime too long", "claims.exp - claims.iat <= 60", RuleFailed},
		{"list membership", "'admin' in claims.realm_access.roles", ""},
		{"string function", "claims.email.endsWith('@example.com')", ""},
		{"missing key is an error", "claims.nope == 'x'", RuleFailed},
		{"type error at run time", "claims.sub + 1 == 2", RuleFailed},
		{"float vs int comparison", "claims.ratio > 1", ""},
		{"cost limit", "claims.big.all(a, claims.big.all(b, claims.big.all(c, true)))", RuleFailed},
	}
	big := make([]any, 100)
	for i := range big {
		big[i] = i
	}
	tok := rs.token(t, nil, withClaims(func(m map[string]any) { m["ratio"] = 1.5; m["big"] = big }))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			spec.Rules = []authv1alpha1.Rule{{Expression: "true"}, {Expression: tt.expr, Message: "rule says no"}}
			p := mustCompile(t, spec, testOptions())
			d := p.Decide(bearer(tok))
			if d.Reason != tt.want {
				t.Fatalf("reason = %q (%s), want %q", d.Reason, d.Description, tt.want)
			}
			if tt.want == RuleFailed && d.Description != "rule says no" {
				t.Errorf("description = %q, want the rule's message", d.Description)
			}
		})
	}
}

func TestForwardHeaders(t *testing.T) {
	rs := fixtures().signer("RS256")
	spec := baseSpec()
	spec.ForwardClaims = []authv1alpha1.ForwardClaim{
		{Claim: "sub", Header: "X-Sub"},
		{Claim: "absent", Header: "X-Absent"},
		{Claim: "nul", Header: "X-Null"},
		{Claim: "num", Header: "X-Num"},
		{Claim: "yes", Header: "X-Yes"},
		{Claim: "arr", Header: "X-Arr"},
		{Claim: "obj", Header: "X-Obj"},
		{Claim: "crlf", Header: "X-Crlf"},
		{Claim: "nulbyte", Header: "X-Nul-Byte"},
		{Claim: "tab", Header: "X-Tab"},
		{Claim: "arrcrlf", Header: "X-Arr-Crlf"},
		{Claim: "objnl", Header: "X-Obj-Nl"},
		{Claim: "utf8", Header: "X-Utf8"},
		{Claim: "del", Header: "X-Del"},
	}
	spec.RequiredClaims = nil
	p := mustCompile(t, spec, testOptions())
	tok := rs.token(t, nil, withClaims(func(m map[string]any) {
		m["nul"] = nil
		m["num"] = 12.50
		m["yes"] = true
		m["arr"] = []any{"a", 1, true, map[string]any{"z": 1, "a": []any{}}, nil}
		m["obj"] = map[string]any{"b": "x", "a": []any{1, "y"}}
		m["crlf"] = "evil\r\nSet-Cookie: x=1"
		m["nulbyte"] = "a\x00b"
		m["tab"] = "a\tb"
		m["arrcrlf"] = []any{"a", "b\nc"}
		m["objnl"] = map[string]any{"k": "line\nbreak"}
		m["utf8"] = "Zoë"
		m["del"] = "a\x7fb"
	}))
	d := p.Decide(bearer(tok))
	want := []Header{
		{Name: "X-Sub", Value: "user-1234"},
		{Name: "X-Num", Value: "12.5"},
		{Name: "X-Yes", Value: "true"},
		{Name: "X-Arr", Value: `a,1,true,{"a":[],"z":1},null`},
		{Name: "X-Obj", Value: `{"a":[1,"y"],"b":"x"}`},
		{Name: "X-Tab", Value: "a\tb"},
		{Name: "X-Obj-Nl", Value: `{"k":"line\u000abreak"}`},
		{Name: "X-Utf8", Value: "Zoë"},
	}
	if diff := cmp.Diff(want, d.Headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
}

func TestDecideTokenSources(t *testing.T) {
	rs := fixtures().signer("RS256")
	good := rs.token(t, nil, claims())
	spec := baseSpec()
	spec.TokenSources = []authv1alpha1.TokenSource{
		{Header: &authv1alpha1.HeaderTokenSource{Name: "authorization", Prefix: "Bearer "}},
		{Cookie: &authv1alpha1.CookieTokenSource{Name: "access_token"}},
	}
	p := mustCompile(t, spec, testOptions())
	tests := []struct {
		name   string
		header http.Header
		want   Reason
	}{
		{"header", http.Header{"Authorization": {"Bearer " + good}}, ""},
		{"lower-case scheme", http.Header{"Authorization": {"bearer " + good}}, ""},
		{"cookie", http.Header{"Cookie": {"access_token=" + good}}, ""},
		{"basic falls through to cookie", http.Header{"Authorization": {"Basic dTpw"}, "Cookie": {"access_token=" + good}}, ""},
		{"invalid first source is final", http.Header{"Authorization": {"Bearer junk"}, "Cookie": {"access_token=" + good}}, TokenMalformed},
		{"scheme alone", http.Header{"Authorization": {"Bearer"}, "Cookie": {"access_token=" + good}}, TokenMalformed},
		{"repeated header", http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}, TokenMalformed},
		{"repeated cookie", http.Header{"Cookie": {"access_token=" + good + "; access_token=" + good}}, TokenMalformed},
		{"empty cookie", http.Header{"Cookie": {"access_token="}}, TokenMalformed},
		{"nothing", http.Header{"Cookie": {"other=1"}}, TokenMissing},
		{"glued scheme", http.Header{"Authorization": {"Bearer" + good}}, TokenMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Decide(&Request{Header: tt.header})
			if d.Reason != tt.want {
				t.Errorf("reason = %q (%s), want %q", d.Reason, d.Description, tt.want)
			}
		})
	}
	t.Run("default source is Authorization Bearer", func(t *testing.T) {
		p := mustCompile(t, baseSpec(), testOptions())
		if d := p.Decide(&Request{Header: http.Header{"Cookie": {"access_token=" + good}}}); d.Reason != TokenMissing {
			t.Errorf("cookie with default sources: reason = %q", d.Reason)
		}
	})
}

func TestDecidePublicPaths(t *testing.T) {
	p := mustCompile(t, baseSpec(), testOptions())
	tests := []struct {
		name   string
		req    Request
		public bool
	}{
		{"exact", Request{Path: "/healthz"}, true},
		{"prefix", Request{Path: "/public/a.css"}, true},
		{"encoded prefix", Request{Path: "/%70ublic/a.css"}, true},
		{"not public", Request{Path: "/orders"}, false},
		{"traversal", Request{Path: "/public/../orders"}, false},
		{"encoded traversal", Request{Path: "/public/%2e%2e/orders"}, false},
		{"encoded slash", Request{Path: "/public%2F..%2Forders"}, false},
		{"double slash", Request{Path: "/public//x"}, false},
		{"semicolon", Request{Path: "/healthz;x"}, false},
		{"conflicting headers", Request{Path: "/healthz", PathConflict: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Header = http.Header{"Authorization": {"Bearer junk"}}
			d := p.Decide(&tt.req)
			if tt.public {
				want := Decision{Allowed: true, Status: 200, Public: true}
				if diff := cmp.Diff(want, d); diff != "" {
					t.Errorf("(-want +got):\n%s", diff)
				}
				return
			}
			if d.Public || d.Allowed || d.Reason != TokenMalformed {
				t.Errorf("decision = %+v, want the token checked (token_malformed)", d)
			}
		})
	}
}

func TestAuditMode(t *testing.T) {
	rs := fixtures().signer("RS256")
	spec := baseSpec()
	spec.Mode = authv1alpha1.ModeAudit
	p := mustCompile(t, spec, testOptions())
	if p.Mode() != authv1alpha1.ModeAudit {
		t.Fatalf("Mode() = %s", p.Mode())
	}
	t.Run("would deny", func(t *testing.T) {
		d := p.Decide(bearer(rs.token(t, nil, withClaims(func(m map[string]any) { delete(m, "sub") }))))
		want := Decision{Allowed: true, Status: 200, Reason: ClaimMissing, Description: `required claim "sub" is missing`, Audit: true}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("no token", func(t *testing.T) {
		d := p.Decide(&Request{Header: http.Header{}})
		want := Decision{Allowed: true, Status: 200, Reason: TokenMissing, Audit: true}
		if diff := cmp.Diff(want, d); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
	t.Run("allowed keeps headers", func(t *testing.T) {
		d := p.Decide(bearer(rs.token(t, nil, claims())))
		if !d.Allowed || d.Audit || d.Reason != "" || len(d.Headers) != 2 {
			t.Errorf("decision = %+v", d)
		}
	})
	t.Run("explain reports enforce", func(t *testing.T) {
		d, tr := p.Explain(bearer(rs.token(t, nil, withClaims(func(m map[string]any) { delete(m, "sub") }))))
		if d.Allowed || d.Status != 403 || d.Audit || d.Reason != ClaimMissing {
			t.Errorf("explain decision = %+v, want the Enforce denial", d)
		}
		if tr.Mode != "Audit" || tr.Steps[len(tr.Steps)-1].Name != "mode" {
			t.Errorf("trace does not note Audit mode: %+v", tr)
		}
	})
}

func TestKeysUnavailableSaysWhy(t *testing.T) {
	spec := baseSpec()
	opts := testOptions()
	opts.Secrets = func(ns, name, key string) ([]byte, error) {
		return nil, ErrSecretNotFound
	}
	p := mustCompile(t, spec, opts)
	c := claims()
	c["iss"] = testHSIssuer
	d := p.Decide(bearer(fixtures().signer("HS256").token(t, nil, c)))
	if d.Reason != KeysUnavailable || !strings.Contains(d.Description, "secret") {
		t.Errorf("decision = %+v, want keys_unavailable naming the Secret", d)
	}
	if p.KeysReady() {
		t.Error("KeysReady() = true with an absent Secret")
	}
	st := p.KeyStatus()
	if len(st) != 2 || !st[0].Loaded || st[1].Loaded || st[1].Err == nil || st[1].Source != "secret" {
		t.Errorf("KeyStatus = %+v", st)
	}
	if diff := cmp.Diff([]string{"rsa1", "rsa2", "ec1", "ed1"}, st[0].KIDs); diff != "" {
		t.Errorf("KIDs (-want +got):\n%s", diff)
	}
	// The RS256 issuer still works.
	if d := p.Decide(bearer(fixtures().signer("RS256").token(t, nil, claims()))); !d.Allowed {
		t.Errorf("other issuer: %+v", d)
	}
}
