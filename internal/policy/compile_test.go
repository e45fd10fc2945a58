package policy

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

func TestCompileErrors(t *testing.T) {
	k := fixtures()
	tests := []struct {
		name string
		mod  func(s *authv1alpha1.JWTPolicySpec)
		opts func(o *CompileOptions)
		// want: field path -> a fragment of the message that says the fix.
		want map[string]string
	}{
		{"no issuers", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers = nil },
			nil, map[string]string{"spec.issuers": "at least one issuer"}},
		{"duplicate issuer", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[1].Issuer = testIssuer },
			nil, map[string]string{"spec.issuers[1].issuer": "Duplicate"}},
		{"alg none", func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"RS256", "none"}
		},
			nil, map[string]string{"spec.issuers[0].algorithms[1]": "never accepted"}},
		{"unknown alg", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"RS1"} },
			nil, map[string]string{"spec.issuers[0].algorithms[0]": "supported values"}},
		{"HS256 inline", func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].Algorithms = []authv1alpha1.Algorithm{"RS256", "HS256"}
		},
			nil, map[string]string{"spec.issuers[0].algorithms[1]": "only jwks.secretRef"}},
		{"private key inline", func(s *authv1alpha1.JWTPolicySpec) {
			m := rsaJWK("rsa1", "", &k.rsa.PublicKey)
			m["d"] = b64(k.rsa.D.Bytes())
			s.Issuers[0].JWKS.Inline = jwks(m)
		}, nil, map[string]string{"spec.issuers[0].jwks.inline": "private"}},
		{"oct inline", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS.Inline = hmacJWKS() },
			nil, map[string]string{"spec.issuers[0].jwks.inline": "keys[0]"}},
		{"bad secret content", nil, func(o *CompileOptions) {
			o.Secrets = func(string, string, string) ([]byte, error) { return []byte("not json"), nil }
		}, map[string]string{"spec.issuers[1].jwks.secretRef": "JWKS"}},
		{"two sources", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS.URI = "https://idp.example.com/certs" },
			nil, map[string]string{"spec.issuers[0].jwks": "only one"}},
		{"no source", func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS = authv1alpha1.JWKSSource{} },
			nil, map[string]string{"spec.issuers[0].jwks": "set one of"}},
		{"http uri", func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].JWKS = authv1alpha1.JWKSSource{URI: "http://idp.example.com/certs"}
		}, nil, map[string]string{"spec.issuers[0].jwks.uri": "https"}},
		{"uri with credentials", func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].JWKS = authv1alpha1.JWKSSource{URI: "https://u:p@idp.example.com/certs"}
		}, nil, map[string]string{"spec.issuers[0].jwks.uri": "credentials"}},
		{"discovery needs URL issuer", func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].Issuer = "shop-idp"
			s.Issuers[0].JWKS = authv1alpha1.JWKSSource{Discovery: true}
		}, nil, map[string]string{"spec.issuers[0].jwks.discovery": "issuer must be a URL"}},
		{"bad claim path", func(s *authv1alpha1.JWTPolicySpec) { s.RequiredClaims[1].Claim = "realm_access..roles" },
			nil, map[string]string{"spec.requiredClaims[1].claim": `\.`}},
		{"bad escape", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[0].Claim = `a\b` },
			nil, map[string]string{"spec.forwardClaims[0].claim": "only"}},
		{"values on Exists", func(s *authv1alpha1.JWTPolicySpec) { s.RequiredClaims[0].Values = []string{"x"} },
			nil, map[string]string{"spec.requiredClaims[0].values": "must be empty"}},
		{"no values on In", func(s *authv1alpha1.JWTPolicySpec) { s.RequiredClaims[2].Values = nil },
			nil, map[string]string{"spec.requiredClaims[2].values": "at least one value"}},
		{"bad regexp", func(s *authv1alpha1.JWTPolicySpec) {
			s.RequiredClaims = append(s.RequiredClaims, authv1alpha1.RequiredClaim{Claim: "email", Operator: "Matches", Values: []string{"ok", "(a"}})
		}, nil, map[string]string{"spec.requiredClaims[3].values[1]": "RE2"}},
		{"backreference is not RE2", func(s *authv1alpha1.JWTPolicySpec) {
			s.RequiredClaims = append(s.RequiredClaims, authv1alpha1.RequiredClaim{Claim: "email", Operator: "Matches", Values: []string{`(a)\1`}})
		}, nil, map[string]string{"spec.requiredClaims[3].values[0]": "RE2"}},
		{"unknown operator", func(s *authv1alpha1.JWTPolicySpec) { s.RequiredClaims[0].Operator = "Equals" },
			nil, map[string]string{"spec.requiredClaims[0].operator": "supported values"}},
		{"CEL syntax", func(s *authv1alpha1.JWTPolicySpec) { s.Rules = []authv1alpha1.Rule{{Expression: "claims.exp <"}} },
			nil, map[string]string{"spec.rules[0].expression": "does not compile"}},
		{"CEL not bool", func(s *authv1alpha1.JWTPolicySpec) {
			s.Rules = []authv1alpha1.Rule{{Expression: "claims.exp - claims.iat"}}
		},
			nil, map[string]string{"spec.rules[0].expression": "must evaluate to bool"}},
		{"CEL unknown variable", func(s *authv1alpha1.JWTPolicySpec) { s.Rules = []authv1alpha1.Rule{{Expression: "token.exp > 0"}} },
			nil, map[string]string{"spec.rules[0].expression": "undeclared"}},
		{"reserved forward header", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[0].Header = "authorization" },
			nil, map[string]string{"spec.forwardClaims[0].header": "reserved"}},
		{"hop-by-hop forward header", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[1].Header = "Transfer-Encoding" },
			nil, map[string]string{"spec.forwardClaims[1].header": "reserved"}},
		{"x-forwarded forward header", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[1].Header = "X-Forwarded-For" },
			nil, map[string]string{"spec.forwardClaims[1].header": "reserved"}},
		{"forward into token source", func(s *authv1alpha1.JWTPolicySpec) {
			s.TokenSources = []authv1alpha1.TokenSource{{Header: &authv1alpha1.HeaderTokenSource{Name: "X-Token"}}}
			s.ForwardClaims[1].Header = "x-token"
		}, nil, map[string]string{"spec.forwardClaims[1].header": "token source"}},
		{"invalid header name", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[0].Header = "X Auth" },
			nil, map[string]string{"spec.forwardClaims[0].header": "header name"}},
		{"duplicate header", func(s *authv1alpha1.JWTPolicySpec) { s.ForwardClaims[1].Header = "x-auth-subject" },
			nil, map[string]string{"spec.forwardClaims[1].header": "Duplicate"}},
		{"source with both", func(s *authv1alpha1.JWTPolicySpec) {
			s.TokenSources = []authv1alpha1.TokenSource{{Header: &authv1alpha1.HeaderTokenSource{Name: "A"}, Cookie: &authv1alpha1.CookieTokenSource{Name: "c"}}}
		}, nil, map[string]string{"spec.tokenSources[0]": "exactly one"}},
		{"bad prefix", func(s *authv1alpha1.JWTPolicySpec) {
			s.TokenSources = []authv1alpha1.TokenSource{{Header: &authv1alpha1.HeaderTokenSource{Name: "Authorization", Prefix: "Bearer token "}}}
		}, nil, map[string]string{"spec.tokenSources[0].header.prefix": "scheme"}},
		{"skew too large", func(s *authv1alpha1.JWTPolicySpec) { s.ClockSkew = duration(6 * time.Minute) },
			nil, map[string]string{"spec.clockSkew": "5m"}},
		{"negative skew", func(s *authv1alpha1.JWTPolicySpec) { s.ClockSkew = duration(-time.Second) },
			nil, map[string]string{"spec.clockSkew": "0s"}},
		{"public path traversal", func(s *authv1alpha1.JWTPolicySpec) { s.PublicPaths = []string{"/ok", "/a/../b"} },
			nil, map[string]string{"spec.publicPaths[1]": "segments"}},
		{"public path relative", func(s *authv1alpha1.JWTPolicySpec) { s.PublicPaths = []string{"healthz"} },
			nil, map[string]string{"spec.publicPaths[0]": `start with "/"`}},
		{"public path encoded", func(s *authv1alpha1.JWTPolicySpec) { s.PublicPaths = []string{"/a%20b"} },
			nil, map[string]string{"spec.publicPaths[0]": `"%"`}},
		{"bad mode", func(s *authv1alpha1.JWTPolicySpec) { s.Mode = "Permissive" },
			nil, map[string]string{"spec.mode": "supported values"}},
		{"several errors at once", func(s *authv1alpha1.JWTPolicySpec) {
			s.RequiredClaims[0].Claim = "."
			s.Rules = []authv1alpha1.Rule{{Expression: "1"}}
		}, nil, map[string]string{"spec.requiredClaims[0].claim": "empty segment", "spec.rules[0].expression": "bool"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := baseSpec()
			if tt.mod != nil {
				tt.mod(spec)
			}
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			p, errs := Compile(spec, opts)
			if p != nil {
				t.Errorf("Compile returned a policy with errors %v", errs)
			}
			got := map[string]string{}
			for _, e := range errs {
				got[e.Field] = e.Error()
			}
			if len(got) != len(tt.want) {
				t.Errorf("errors = %v, want fields %v", errs, tt.want)
			}
			for f, frag := range tt.want {
				if msg, ok := got[f]; !ok {
					t.Errorf("no error at %s; got %v", f, errs)
				} else if !strings.Contains(msg, frag) {
					t.Errorf("error at %s = %q, want it to mention %q", f, msg, frag)
				}
			}
		})
	}
}

func TestCompileErrorsNeverEchoKeys(t *testing.T) {
	k := fixtures()
	spec := baseSpec()
	m := rsaJWK("rsa1", "", &k.rsa.PublicKey)
	m["d"] = b64(k.rsa.D.Bytes())
	spec.Issuers[0].JWKS.Inline = jwks(m)
	_, errs := Compile(spec, testOptions())
	text := errs.ToAggregate().Error()
	if strings.Contains(text, m["d"].(string)[:20]) || strings.Contains(text, m["n"].(string)[:20]) {
		t.Errorf("error echoes key material: %s", text)
	}
}

func TestCompileDefaults(t *testing.T) {
	spec := &authv1alpha1.JWTPolicySpec{Issuers: []authv1alpha1.Issuer{{Issuer: testIssuer, JWKS: authv1alpha1.JWKSSource{Inline: jwks(
		rsaJWK("rsa1", "", &fixtures().rsa.PublicKey), ecJWK("ec1", &fixtures().ec.PublicKey))}}}}
	p := mustCompile(t, spec, CompileOptions{Namespace: "ns", Name: "n", Clock: testClock})
	if p.Mode() != authv1alpha1.ModeEnforce || p.skew != 30*time.Second || p.MaxTokenBytes() != DefaultMaxTokenBytes {
		t.Errorf("defaults: mode %s skew %s cap %d", p.Mode(), p.skew, p.MaxTokenBytes())
	}
	if diff := cmp.Diff([]string{"RS256", "ES256"}, p.issuers[0].algs.names()); diff != "" {
		t.Errorf("default algorithms (-want +got):\n%s", diff)
	}
	if !p.issuers[0].requireExp {
		t.Error("requireExpiry defaults to false")
	}
	if len(p.sources) != 1 || p.sources[0].header != "Authorization" || p.sources[0].scheme != "Bearer" {
		t.Errorf("default token source = %+v", p.sources)
	}
	// Defaults in action: a token without exp is refused; PS256 is not allowed.
	if d := p.Decide(bearer(fixtures().signer("RS256").token(t, nil, withClaims(func(m map[string]any) { delete(m, "exp") })))); d.Reason != ExpiryMissing {
		t.Errorf("no exp: %+v", d)
	}
	if d := p.Decide(bearer(signer{"PS256", fixtures().rsa, "rsa1"}.token(t, nil, claims()))); d.Reason != AlgNotAllowed {
		t.Errorf("PS256: %+v", d)
	}
	if d := p.Decide(bearer(fixtures().signer("ES256").token(t, nil, claims()))); !d.Allowed {
		t.Errorf("ES256: %+v", d)
	}
	if !p.KeysReady() || p.Namespace() != "ns" || p.Name() != "n" {
		t.Errorf("KeysReady %v, ns %q, name %q", p.KeysReady(), p.Namespace(), p.Name())
	}
}

func TestCompileWithoutResolvers(t *testing.T) {
	// The admission webhook compiles without a fetcher or a resolver: remote
	// and Secret sources are syntax-checked only.
	spec := baseSpec()
	spec.Issuers = append(spec.Issuers, authv1alpha1.Issuer{Issuer: "https://remote.example.com", JWKS: authv1alpha1.JWKSSource{Discovery: true}})
	opts := testOptions()
	opts.Secrets = nil
	p := mustCompile(t, spec, opts)
	if p.KeysReady() {
		t.Error("KeysReady() = true without resolvers")
	}
	st := p.KeyStatus()
	if st[1].Source != "secret" || st[1].Err == nil || st[2].Source != "discovery" || st[2].Err == nil {
		t.Errorf("KeyStatus = %+v", st)
	}
}

func TestCompileNilSpec(t *testing.T) {
	_, errs := Compile(nil, CompileOptions{})
	if len(errs) != 1 || errs[0].Type != field.ErrorTypeRequired {
		t.Errorf("errors = %v", errs)
	}
}
