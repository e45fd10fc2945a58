package policy

import (
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// privateParams are the JWK members that hold secret key material.
var privateParams = []string{"d", "p", "q", "dp", "dq", "qi", "k"}

// secretValues returns the secret key material of the JWKS documents in docs (inline key sets
// and Secret values) that appears exactly once in all of the input, so that finding it in an
// error message can only mean the message repeats the secret (a kid equal to a "d" would
// otherwise be a false alarm).
func secretValues(all string, docs ...string) []string {
	var out []string
	for _, doc := range docs {
		var set struct {
			Keys []map[string]any `json:"keys"`
		}
		if json.Unmarshal([]byte(doc), &set) != nil {
			continue
		}
		for _, k := range set.Keys {
			for _, name := range privateParams {
				if v, ok := k[name].(string); ok && len(v) >= 12 && strings.Count(all, v) == 1 {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// knownErrorTypes are the field error types Compile may return.
var knownErrorTypes = map[field.ErrorType]bool{
	field.ErrorTypeRequired: true, field.ErrorTypeInvalid: true, field.ErrorTypeNotSupported: true,
	field.ErrorTypeTooLong: true, field.ErrorTypeTooMany: true, field.ErrorTypeDuplicate: true,
	field.ErrorTypeForbidden: true,
}

// FuzzCompile feeds arbitrary JWTPolicy specs (as JSON) and Secret values to Compile, the one
// compile step of the admission webhook, the reconciler, serve and explain. Seeds are in
// testdata/fuzz/FuzzCompile. Invariants:
//   - no panic;
//   - a policy exactly when there is no error;
//   - every error is a field error of a known type whose path is under spec;
//   - no error repeats secret key material of an inline key set or a Secret value;
//   - a compiled policy decides a request (a valid token of the test issuer, and garbage) with
//     a contract answer, without panicking.
func FuzzCompile(f *testing.F) {
	k := fixtures()
	priv := rsaJWK("rsa1", "RS256", &k.rsa.PublicKey)
	priv["d"] = b64(k.rsa.D.Bytes())
	priv["p"] = b64(k.rsa.Primes[0].Bytes())
	priv["q"] = b64(k.rsa.Primes[1].Bytes())
	ecPriv := ecJWK("ec1", &k.ec.PublicKey)
	ecPriv["d"] = b64(k.ec.D.FillBytes(make([]byte, 32)))
	weak := rsaJWK("weak", "", &k.rsa.PublicKey)
	weak["e"] = b64(big.NewInt(3).Bytes())
	every := fuzzSpec()
	every.TokenSources = []authv1alpha1.TokenSource{
		{Header: &authv1alpha1.HeaderTokenSource{Name: "Authorization", Prefix: "Bearer "}},
		{Cookie: &authv1alpha1.CookieTokenSource{Name: "access_token"}},
	}
	specs := []*authv1alpha1.JWTPolicySpec{baseSpec(), every}
	for _, mod := range []func(s *authv1alpha1.JWTPolicySpec){
		func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS.Inline = jwks(priv) },
		func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS.Inline = jwks(ecPriv, weak) },
		func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS.Inline = hmacJWKS() },
		func(s *authv1alpha1.JWTPolicySpec) {
			s.Issuers[0].JWKS = authv1alpha1.JWKSSource{URI: "http://idp.example.com/certs#x"}
		},
		func(s *authv1alpha1.JWTPolicySpec) { s.Issuers[0].JWKS = authv1alpha1.JWKSSource{Discovery: true} },
		func(s *authv1alpha1.JWTPolicySpec) {
			s.Mode = "Audit"
			s.Rules = []authv1alpha1.Rule{{Expression: "claims.exp -", Message: "x"}}
		},
		func(s *authv1alpha1.JWTPolicySpec) {
			s.RequiredClaims = append(s.RequiredClaims, authv1alpha1.RequiredClaim{Claim: `a\.b..c`, Operator: "Matches", Values: []string{"("}})
		},
		func(s *authv1alpha1.JWTPolicySpec) {
			s.ForwardClaims = append(s.ForwardClaims, authv1alpha1.ForwardClaim{Claim: "sub", Header: "Authorization"})
			s.PublicPaths = []string{"/a/../b", "no-slash", "/%2e/"}
			s.TokenSources = []authv1alpha1.TokenSource{{Cookie: &authv1alpha1.CookieTokenSource{Name: ""}}}
		},
	} {
		s := baseSpec()
		mod(s)
		specs = append(specs, s)
	}
	for _, s := range specs {
		b, err := json.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, hmacJWKS())
	}
	f.Add([]byte(`{"issuers":[{"issuer":"x","jwks":{"secretRef":{"name":"hs","key":"jwks.json"}}}]}`),
		jwks(map[string]any{"kty": "oct", "kid": "short", "alg": "HS256", "k": b64([]byte("0123456789abcdef"))}))
	f.Add([]byte(`{}`), "")

	valid := k.signer("RS256").token(f, nil, claims())
	f.Fuzz(func(t *testing.T, specJSON []byte, secret string) {
		var spec authv1alpha1.JWTPolicySpec
		if json.Unmarshal(specJSON, &spec) != nil {
			return
		}
		opts := testOptions()
		opts.Secrets = func(ns, name, key string) ([]byte, error) {
			if secret == "" {
				return nil, ErrSecretNotFound
			}
			return []byte(secret), nil
		}
		p, errs := Compile(&spec, opts)
		if (p == nil) != (len(errs) > 0) {
			t.Fatalf("policy %v with %d errors", p != nil, len(errs))
		}
		var inline []string
		for _, iss := range spec.Issuers {
			inline = append(inline, iss.JWKS.Inline)
		}
		secrets := secretValues(string(specJSON)+"\x00"+secret, append(inline, secret)...)
		for _, e := range errs {
			if e == nil {
				t.Fatal("a nil field error")
			}
			if e.Field != "spec" && !strings.HasPrefix(e.Field, "spec.") {
				t.Fatalf("error outside spec: %v", e)
			}
			if !knownErrorTypes[e.Type] {
				t.Fatalf("error of type %q: %v", e.Type, e)
			}
			msg := e.Error()
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Fatalf("error repeats secret key material: %.200s", msg)
				}
			}
		}
		if p == nil {
			return
		}
		for _, tok := range []string{valid, "a.b.c", ""} {
			req := &Request{Header: http.Header{}, Path: "/orders"}
			if tok != "" {
				req.Header["Authorization"] = []string{"Bearer " + tok}
			}
			d := p.Decide(req)
			if p.Mode() == authv1alpha1.ModeAudit {
				if !d.Allowed || d.Status != http.StatusOK || (d.Reason != "" && !d.Reason.Valid()) {
					t.Fatalf("Audit mode decision %+v", d)
				}
				continue
			}
			checkDecision(t, d)
		}
	})
}
