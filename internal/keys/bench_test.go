package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"math/big"
	"strings"
	"testing"
)

// benchInput is a realistic signing input: an access token's header and payload of about 600
// bytes, the size identity providers issue.
var benchInput = func() []byte {
	enc := base64.RawURLEncoding
	header := `{"alg":"RS256","typ":"JWT","kid":"2f1e6c7d9a"}`
	payload := `{"iss":"https://idp.example.com/realms/shop","sub":"f81d4fae-7dec-11d0-a765-00a0c91e6bf6",` +
		`"aud":["orders-api","account"],"exp":1767225600,"iat":1767222000,"nbf":1767222000,` +
		`"jti":"5d3c2b1a-0f9e-8d7c-6b5a-4f3e2d1c0b9a","azp":"web","scope":"openid profile email orders:read",` +
		`"email":"alice@example.com","email_verified":true,"realm_access":{"roles":["admin","ops","user"]},` +
		`"name":"Alice Example","preferred_username":"alice","tenant":"acme"}`
	return []byte(enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload)))
}()

var benchAlgs = []string{"RS256", "PS256", "ES256", "EdDSA", "HS256"}

// BenchmarkVerify measures VerifySignature with parsed keys; compare each with BenchmarkBare,
// the standard-library call a hand-written verifier would make (hash included in both).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			priv := privFor(alg)
			doc := jwks(b, with(jwkOf(b, publicOf(priv)), "kid", "k", "alg", alg))
			set, err := ParseStrict(doc, ParseOptions{Algorithms: Algorithms, AllowSymmetric: alg == "HS256"})
			if err != nil {
				b.Fatal(err)
			}
			key := set.Lookup("k")
			sig := sign(b, alg, priv, benchInput)
			if err := VerifySignature(alg, key, benchInput, sig); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := VerifySignature(alg, key, benchInput, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBare is the baseline: the bare standard-library verification for each algorithm.
func BenchmarkBare(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			priv := privFor(alg)
			sig := sign(b, alg, priv, benchInput)
			var verify func() bool
			switch alg {
			case "RS256":
				pub := &testRSA().PublicKey
				verify = func() bool {
					d := sha256.Sum256(benchInput)
					return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
				}
			case "PS256":
				pub := &testRSA().PublicKey
				opts := &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}
				verify = func() bool {
					d := sha256.Sum256(benchInput)
					return rsa.VerifyPSS(pub, crypto.SHA256, d[:], sig, opts) == nil
				}
			case "ES256":
				pub := &testP256().PublicKey
				verify = func() bool {
					d := sha256.Sum256(benchInput)
					r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
					return ecdsa.Verify(pub, d[:], r, s)
				}
			case "EdDSA":
				pub := testEd().Public().(ed25519.PublicKey)
				verify = func() bool { return ed25519.Verify(pub, benchInput, sig) }
			case "HS256":
				secret := testSecret()
				verify = func() bool {
					mac := hmac.New(sha256.New, secret)
					mac.Write(benchInput)
					return hmac.Equal(mac.Sum(nil), sig)
				}
			}
			if !verify() {
				b.Fatal("baseline does not verify")
			}
			b.ReportAllocs()
			for b.Loop() {
				if !verify() {
					b.Fatal("baseline does not verify")
				}
			}
		})
	}
}

// TestVerifyAllocations pins the allocation budget of the hot path: HMAC with a parsed key
// reuses pooled state, and the checks before the crypto allocate nothing.
func TestVerifyAllocations(t *testing.T) {
	doc := jwks(t, with(jwkOf(t, testSecret()), "kid", "h", "alg", "HS256"))
	set, err := ParseStrict(doc, ParseOptions{Algorithms: []string{"HS256"}, AllowSymmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	key := set.Lookup("h")
	sig := sign(t, "HS256", testSecret(), benchInput)
	if n := testing.AllocsPerRun(200, func() {
		if VerifySignature("HS256", key, benchInput, sig) != nil {
			t.Fatal("HS256 does not verify")
		}
	}); n != 0 && !raceEnabled {
		t.Errorf("HS256 verify allocates %v times per call, want 0", n)
	}
	rsaKey := mustKey(t, "r", "RS256", &testRSA().PublicKey)
	bad := []byte(strings.Repeat("x", 10))
	if n := testing.AllocsPerRun(200, func() { _ = VerifySignature("RS256", rsaKey, benchInput, bad) }); n != 0 {
		t.Errorf("rejecting a wrong-length signature allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() { _ = VerifySignature("HS256", rsaKey, benchInput, bad) }); n != 0 {
		t.Errorf("rejecting an algorithm mismatch allocates %v times, want 0", n)
	}
}
