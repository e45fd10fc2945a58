package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	authv1alpha1 "github.com/claimguard/claimguard/api/v1alpha1"
)

// Test fixtures: keys are generated once per test binary (RSA generation is
// the slow part) and never written anywhere.

const (
	testIssuer   = "https://idp.example.com/realms/shop"
	testHSIssuer = "https://hs.example.com"
	testAudience = "orders-api"
)

// testNow is the fixed clock of every test policy.
var testNow = time.Unix(1_800_000_000, 0)

func testClock() time.Time { return testNow }

type testKeySet struct {
	rsa      *rsa.PrivateKey // kid rsa1
	rsa2     *rsa.PrivateKey // kid rsa2, bound to PS256
	ec       *ecdsa.PrivateKey
	ed       ed25519.PrivateKey
	hmac     []byte
	attacker *rsa.PrivateKey // never in any policy
	attackEC *ecdsa.PrivateKey
}

var fixtures = sync.OnceValue(func() *testKeySet {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	var k testKeySet
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.attacker, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.ec, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	k.attackEC, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	k.hmac = make([]byte, 32)
	_, err = rand.Read(k.hmac)
	must(err)
	return &k
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func rsaJWK(kid, alg string, pub *rsa.PublicKey) map[string]any {
	m := map[string]any{"kty": "RSA", "kid": kid, "use": "sig", "n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes())}
	if alg != "" {
		m["alg"] = alg
	}
	return m
}

func ecJWK(kid string, pub *ecdsa.PublicKey) map[string]any {
	x, y := make([]byte, 32), make([]byte, 32)
	pub.X.FillBytes(x)
	pub.Y.FillBytes(y)
	return map[string]any{"kty": "EC", "kid": kid, "crv": "P-256", "x": b64(x), "y": b64(y)}
}

func edJWK(kid string, pub ed25519.PublicKey) map[string]any {
	return map[string]any{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(pub)}
}

func jwks(keys ...map[string]any) string {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return string(b)
}

// inlineJWKS is the test issuer's key set: RSA (rsa1, any RS*/PS*), RSA
// bound to PS256 (rsa2), P-256 (ec1) and Ed25519 (ed1).
func inlineJWKS() string {
	k := fixtures()
	return jwks(
		rsaJWK("rsa1", "", &k.rsa.PublicKey),
		rsaJWK("rsa2", "PS256", &k.rsa2.PublicKey),
		ecJWK("ec1", &k.ec.PublicKey),
		edJWK("ed1", k.ed.Public().(ed25519.PublicKey)),
	)
}

func hmacJWKS() string {
	return jwks(map[string]any{"kty": "oct", "kid": "hs1", "alg": "HS256", "k": b64(fixtures().hmac)})
}

// baseSpec is a realistic policy: two issuers, three required claims, two
// forwarded claims.
func baseSpec() *authv1alpha1.JWTPolicySpec {
	return &authv1alpha1.JWTPolicySpec{
		Issuers: []authv1alpha1.Issuer{
			{
				Issuer:     testIssuer,
				Audiences:  []string{testAudience},
				Algorithms: []authv1alpha1.Algorithm{"RS256", "PS256", "ES256", "EdDSA"},
				JWKS:       authv1alpha1.JWKSSource{Inline: inlineJWKS()},
			},
			{
				Issuer:     testHSIssuer,
				Algorithms: []authv1alpha1.Algorithm{"HS256"},
				JWKS:       authv1alpha1.JWKSSource{SecretRef: &authv1alpha1.SecretKeyRef{Name: "hs", Key: "jwks.json"}},
			},
		},
		RequiredClaims: []authv1alpha1.RequiredClaim{
			{Claim: "sub", Operator: authv1alpha1.OpExists},
			{Claim: "realm_access.roles", Operator: authv1alpha1.OpContainsAny, Values: []string{"admin", "ops"}},
			{Claim: "email_verified", Operator: authv1alpha1.OpIn, Values: []string{"true"}},
		},
		ForwardClaims: []authv1alpha1.ForwardClaim{
			{Claim: "sub", Header: "X-Auth-Subject"},
			{Claim: "realm_access.roles", Header: "x-auth-roles"},
		},
		PublicPaths: []string{"/healthz", "/public/"},
	}
}

func testSecrets(ns, name, key string) ([]byte, error) {
	if ns == "shop" && name == "hs" && key == "jwks.json" {
		return []byte(hmacJWKS()), nil
	}
	return nil, fmt.Errorf("secret %s/%s: %w", ns, name, ErrSecretNotFound)
}

func testOptions() CompileOptions {
	return CompileOptions{Namespace: "shop", Name: "orders", Revision: "1", Secrets: testSecrets, Clock: testClock}
}

func mustCompile(t testing.TB, spec *authv1alpha1.JWTPolicySpec, opts CompileOptions) *Policy {
	t.Helper()
	p, errs := Compile(spec, opts)
	if len(errs) > 0 {
		t.Fatalf("Compile: %v", errs.ToAggregate())
	}
	return p
}

// claims returns a valid payload for the test issuer.
func claims() map[string]any {
	now := testNow.Unix()
	return map[string]any{
		"iss":            testIssuer,
		"sub":            "user-1234",
		"aud":            []any{testAudience, "other"},
		"exp":            now + 3600,
		"iat":            now - 10,
		"nbf":            now - 10,
		"email_verified": true,
		"email":          "jane@example.com",
		"realm_access":   map[string]any{"roles": []any{"user", "admin"}},
		"scope":          "openid orders:read profile",
	}
}

// signer signs compact JWS tokens for tests.
type signer struct {
	alg string
	key any // *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey, []byte
	kid string
}

func (k *testKeySet) signer(alg string) signer {
	switch alg {
	case "RS256":
		return signer{alg, k.rsa, "rsa1"}
	case "PS256":
		return signer{alg, k.rsa2, "rsa2"}
	case "ES256":
		return signer{alg, k.ec, "ec1"}
	case "EdDSA":
		return signer{alg, k.ed, "ed1"}
	case "HS256":
		return signer{alg, k.hmac, "hs1"}
	}
	panic("no signer for " + alg)
}

// token builds header (with alg and kid unless overridden) and payload and signs them.
func (s signer) token(t testing.TB, header map[string]any, payload map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": s.alg, "typ": "JWT"}
	if s.kid != "" {
		h["kid"] = s.kid
	}
	for k, v := range header {
		if v == nil {
			delete(h, k)
		} else {
			h[k] = v
		}
	}
	hb, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	return s.raw(t, string(hb), string(pb))
}

// raw signs the given header and payload JSON text as is.
func (s signer) raw(t testing.TB, header, payload string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	return input + "." + b64(s.sign(t, []byte(input)))
}

func (s signer) sign(t testing.TB, input []byte) []byte {
	t.Helper()
	hashOf := func(h crypto.Hash) []byte {
		hh := h.New()
		hh.Write(input)
		return hh.Sum(nil)
	}
	var sig []byte
	var err error
	switch key := s.key.(type) {
	case *rsa.PrivateKey:
		switch {
		case strings.HasPrefix(s.alg, "RS"):
			sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, hashOf(crypto.SHA256))
		case strings.HasPrefix(s.alg, "PS"):
			sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, hashOf(crypto.SHA256), &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
		default:
			t.Fatalf("alg %s with an RSA key", s.alg)
		}
	case *ecdsa.PrivateKey:
		r, ss, e := ecdsa.Sign(rand.Reader, key, hashOf(crypto.SHA256))
		err = e
		sig = make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
	case ed25519.PrivateKey:
		sig = ed25519.Sign(key, input)
	case []byte:
		var m = hmac.New(sha256.New, key)
		if s.alg == "HS512" {
			m = hmac.New(sha512.New, key)
		}
		m.Write(input)
		sig = m.Sum(nil)
	default:
		t.Fatalf("unknown key type %T", s.key)
	}
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// bearer builds a request carrying tok in the Authorization header.
func bearer(tok string) *Request {
	return &Request{Header: http.Header{"Authorization": {"Bearer " + tok}}, Path: "/orders/42"}
}

func withClaims(mod func(m map[string]any)) map[string]any {
	m := claims()
	mod(m)
	return m
}

func duration(d time.Duration) *metav1.Duration { return &metav1.Duration{Duration: d} }
