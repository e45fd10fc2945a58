package policy

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"
)

// benchClaims is a realistic access token payload: a dozen claims, about
// 800 bytes as an RS256 token.
func benchClaims(iss string) map[string]any {
	m := claims()
	m["iss"] = iss
	m["jti"] = "6f1c2a9e-8b3d-4c7a-9e21-5d4b3a2f1e0c"
	m["azp"] = "orders-frontend"
	m["sid"] = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"
	m["name"] = "Jane Doe"
	m["preferred_username"] = "jane"
	return m
}

var benchAlgs = []string{"RS256", "PS256", "ES256", "EdDSA", "HS256"}

func benchToken(b *testing.B, alg string) string {
	iss := testIssuer
	if alg == "HS256" {
		iss = testHSIssuer
	}
	return fixtures().signer(alg).token(b, nil, benchClaims(iss))
}

// BenchmarkDecide measures a whole decision: token extraction, structure,
// header and payload parsing, issuer, alg, key, signature, time claims,
// audience, three required claims and two forwarded headers. "uncached" is
// a policy without a cache (every call verifies); "cached" hits the cache.
func BenchmarkDecide(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			req := bearer(benchToken(b, alg))
			b.Run("uncached", func(b *testing.B) {
				p := mustCompile(b, baseSpec(), testOptions())
				if d := p.Decide(req); !d.Allowed {
					b.Fatalf("decision = %+v", d)
				}
				b.ReportAllocs()
				for b.Loop() {
					p.Decide(req)
				}
			})
			b.Run("cached", func(b *testing.B) {
				o := testOptions()
				o.Cache = NewCache(1000)
				p := mustCompile(b, baseSpec(), o)
				if d := p.Decide(req); !d.Allowed {
					b.Fatalf("decision = %+v", d)
				}
				b.ReportAllocs()
				for b.Loop() {
					p.Decide(req)
				}
			})
		})
	}
}

// BenchmarkBareVerify is the bare standard-library verification of the same
// tokens (hashing the signing input included), the yardstick of the 1.25x
// target.
func BenchmarkBareVerify(b *testing.B) {
	k := fixtures()
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			tok := benchToken(b, alg)
			dot := strings.LastIndexByte(tok, '.')
			input := []byte(tok[:dot])
			sig, ok := appendB64URL(nil, tok[dot+1:])
			if !ok {
				b.Fatal("bad signature encoding")
			}
			var verify func() bool
			switch alg {
			case "RS256":
				verify = func() bool {
					h := sha256.Sum256(input)
					return rsa.VerifyPKCS1v15(&k.rsa.PublicKey, crypto.SHA256, h[:], sig) == nil
				}
			case "PS256":
				opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}
				verify = func() bool {
					h := sha256.Sum256(input)
					return rsa.VerifyPSS(&k.rsa2.PublicKey, crypto.SHA256, h[:], sig, opts) == nil
				}
			case "ES256":
				// The ASN.1 form is the standard library's direct path.
				h0 := sha256.Sum256(input)
				asn1Sig, err := ecdsa.SignASN1(nil, k.ec, h0[:])
				if err != nil {
					b.Fatal(err)
				}
				verify = func() bool {
					h := sha256.Sum256(input)
					return ecdsa.VerifyASN1(&k.ec.PublicKey, h[:], asn1Sig)
				}
			case "EdDSA":
				pub := k.ed.Public().(ed25519.PublicKey)
				verify = func() bool { return ed25519.Verify(pub, input, sig) }
			case "HS256":
				verify = func() bool {
					m := hmac.New(sha256.New, k.hmac)
					m.Write(input)
					return hmac.Equal(m.Sum(nil), sig)
				}
			}
			if !verify() {
				b.Fatal("bare verify failed")
			}
			b.ReportAllocs()
			for b.Loop() {
				verify()
			}
		})
	}
}

func TestBenchTokenIsRealistic(t *testing.T) {
	tok := fixtures().signer("RS256").token(t, nil, benchClaims(testIssuer))
	if n := len(tok); n < 700 || n > 1000 {
		t.Errorf("RS256 bench token is %d bytes, want about 800", n)
	}
}
